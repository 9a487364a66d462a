//! `memoryd eval …`: retrieval (LoCoMo, LongMemEval) and summary evaluation
//! on real data, over the engine API (feature `eval` for `run`).

use std::path::PathBuf;

use clap::Subcommand;
use memoryd::SearchMode;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// LoCoMo turn-level retrieval: R@1/5/10/20 per category, ingest rate, search latency.
    /// Runs in a fresh temporary data directory unless --data-dir is given explicitly.
    Locomo {
        /// Path to locomo10.json.
        file: PathBuf,
        /// Ranking: hybrid (BM25 and cosine fused, plus neighbouring turns), dense or lexical.
        #[arg(long, default_value = "hybrid")]
        mode: SearchMode,
        /// Also choose the hybrid weights by leave-one-conversation-out
        /// cross-validation over a grid and report held-out and all-data recall.
        #[arg(long)]
        cv: bool,
        /// Also rank with every point of the hybrid weight grid and print each point's
        /// overall and per-category recall (for choosing on one dataset, reporting on another).
        #[arg(long)]
        grid: bool,
        /// Exact search in every namespace (no HNSW graph, recall 1.0 by construction).
        #[arg(long)]
        exact: bool,
        /// Hits fetched per question.
        #[arg(long, default_value_t = 50)]
        k_max: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// LongMemEval retrieval: turn recall_all@5/@10 and session recall_any@5 by question type,
    /// for hybrid, dense and lexical ranking (or one --mode). One namespace per question,
    /// in a fresh temporary data directory unless --data-dir is given explicitly.
    Longmemeval {
        /// Path to a LongMemEval JSON file (`.json` or `.json.gz`).
        file: PathBuf,
        /// Only this ranking (default: all three).
        #[arg(long)]
        mode: Option<SearchMode>,
        /// Also rank with every point of the hybrid weight grid and print each point's
        /// overall figures (for choosing weights on one dataset and reporting on another).
        #[arg(long)]
        grid: bool,
        /// Questions ingested at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Hits fetched per question.
        #[arg(long, default_value_t = 50)]
        k_max: usize,
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Summarization quality: ROUGE-1/2/L F1 of LEAD-3 and the extractive summarizer
    /// on DialogSum (best of the human references) and LoCoMo sessions.
    Summaries {
        /// Path to dialogsum.test.jsonl.
        #[arg(long)]
        dialogsum: PathBuf,
        /// Path to locomo10.json (optional).
        #[arg(long)]
        locomo: Option<PathBuf>,
        /// DialogSum dialogues to score.
        #[arg(long, default_value_t = 500)]
        limit: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// A grid point's weights with its figures, as `--grid` prints them.
#[cfg(feature = "eval")]
fn grid_point(
    p: &memoryd::HybridParams,
    overall: &impl serde::Serialize,
    breakdown: (&str, &impl serde::Serialize),
) -> serde_json::Value {
    serde_json::json!({
        "lexical_weight": p.lexical_weight, "neighbor_weight": p.neighbor_weight,
        "b": p.bm25.b, "session_weight": p.session_weight,
        "overall": overall, breakdown.0: breakdown.1})
}

/// Runs an evaluation command.
#[cfg(feature = "eval")]
pub fn run(
    args: &super::EngineArgs,
    command: EvalCommand,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    use memoryd::Engine;
    match command {
        EvalCommand::Locomo {
            file,
            mode,
            cv,
            grid,
            exact,
            k_max,
            json,
        } => {
            let tmp = tempfile::tempdir()?;
            let mut config = args.config();
            // --data-dir (or MEMORYD_DATA_DIR) given: evaluate there.
            if args.data_dir.is_none() {
                config.data_dir = tmp.path().to_path_buf();
            }
            if exact {
                config.index.exact_threshold = usize::MAX;
            }
            // Turn-level retrieval: no background summaries competing for the CPU.
            config.summarize.enabled = false;
            if cv || grid {
                // Every question is asked once per weight setting: keep all 1,986
                // query embeddings (an LRU smaller than the cycle misses every time).
                config.query_cache_capacity = config.query_cache_capacity.max(4096);
            }
            let engine = Engine::open(config)?;
            let samples = memoryd::locomo::load(&file)?;
            let report = rt.block_on(memoryd::eval::run_locomo(
                &engine, &samples, "locomo", k_max, mode,
            ))?;
            let cv = if cv {
                let grid = memoryd::eval::default_grid();
                Some(rt.block_on(memoryd::eval::cross_validate(
                    &engine, &samples, "locomo", k_max, &grid,
                ))?)
            } else {
                None
            };
            let mut points = Vec::new();
            if grid {
                for p in memoryd::eval::default_grid() {
                    let (outcomes, mut lat) = rt.block_on(memoryd::eval::ask_locomo(
                        &engine,
                        &samples,
                        "locomo",
                        k_max,
                        SearchMode::Hybrid,
                        Some(p),
                    ))?;
                    let r = memoryd::eval::LocomoReport::new(
                        SearchMode::Hybrid,
                        &outcomes,
                        0.0,
                        &mut lat,
                    );
                    points.push(grid_point(&p, &r.overall, ("by_category", &r.by_category)));
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"report": report, "cross_validation": cv, "grid": points})
                );
            } else {
                print!("{}", report.table());
                for p in &points {
                    println!("{p}");
                }
                if let Some(cv) = cv {
                    println!(
                        "\nleave-one-conversation-out cross-validation over {} weight settings",
                        cv.grid_size
                    );
                    println!(
                        "held out (each conversation ranked with weights chosen on the other nine):"
                    );
                    print!("{}", cv.held_out.table());
                    for f in &cv.folds {
                        println!(
                            "  {}: lexical_weight {} neighbor_weight {} session_weight {} b {}",
                            f.held_out, f.lexical_weight, f.neighbor_weight, f.session_weight, f.b
                        );
                    }
                    let c = &cv.all_data_choice;
                    println!(
                        "all data, best weights (lexical_weight {} neighbor_weight {} session_weight {} b {}):",
                        c.lexical_weight, c.neighbor_weight, c.session_weight, c.b
                    );
                    print!("{}", cv.all_data.table());
                }
            }
            Ok(())
        }
        EvalCommand::Longmemeval {
            file,
            mode,
            grid,
            parallel,
            k_max,
            json,
        } => {
            use memoryd::eval::longmemeval as lme;
            let tmp = tempfile::tempdir()?;
            let mut config = args.config();
            if args.data_dir.is_none() {
                config.data_dir = tmp.path().to_path_buf();
            }
            config.summarize.enabled = false;
            config.query_cache_capacity = config.query_cache_capacity.max(4096);
            let engine = Engine::open(config)?;
            let questions = lme::load(&file)?;
            let ingest = rt.block_on(lme::ingest(&engine, &questions, "lme", parallel))?;
            let modes = match mode {
                Some(m) => vec![m],
                None => vec![SearchMode::Hybrid, SearchMode::Dense, SearchMode::Lexical],
            };
            // Warm the query-embedding cache, so every mode's latency is the
            // ranking's (a query is embedded once, whichever mode asks first).
            rt.block_on(lme::ask(
                &engine,
                &questions,
                "lme",
                k_max,
                SearchMode::Dense,
                None,
            ))?;
            let mut reports = Vec::new();
            for m in modes {
                let (outcomes, mut lat) =
                    rt.block_on(lme::ask(&engine, &questions, "lme", k_max, m, None))?;
                reports.push(lme::LmeReport::new(m, &outcomes, &mut lat));
            }
            let mut points = Vec::new();
            if grid {
                for p in memoryd::eval::default_grid() {
                    let (outcomes, mut lat) = rt.block_on(lme::ask(
                        &engine,
                        &questions,
                        "lme",
                        k_max,
                        SearchMode::Hybrid,
                        Some(p),
                    ))?;
                    let r = lme::LmeReport::new(SearchMode::Hybrid, &outcomes, &mut lat);
                    points.push(grid_point(&p, &r.overall, ("by_type", &r.by_type)));
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ingest_turns_per_s": ingest, "reports": reports, "grid": points})
                );
            } else {
                println!("ingest: {ingest:.1} turns/s");
                for r in &reports {
                    print!("{}", r.table());
                }
                for p in &points {
                    println!("{p}");
                }
            }
            Ok(())
        }
        EvalCommand::Summaries {
            dialogsum,
            locomo,
            limit,
            json,
        } => {
            let embedder = memoryd::load_embedder(&args.model_config())?;
            let queue = memoryd::embed::EmbedQueue::start(embedder, 16, 64, 256);
            let report = rt.block_on(memoryd::eval::run_summaries(
                &queue,
                &dialogsum,
                locomo.as_deref(),
                limit,
            ))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
    }
}
