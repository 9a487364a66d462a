//! Unit tests of the embedding queue: lanes, slicing, aging, cancellation,
//! a panicking model.

use super::*;
use std::sync::atomic::AtomicBool;

/// Records every forward pass's texts; blocks while `hold` is set.
struct Recorder {
    info: ModelInfo,
    calls: Mutex<Vec<Vec<String>>>,
    hold: AtomicBool,
}

impl Embedder for Recorder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        while self.hold.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.calls
            .lock()
            .push(texts.iter().map(|t| t.to_string()).collect());
        // One row per text: [text length, 1.0].
        Ok(Embeddings {
            data: texts.iter().flat_map(|t| [t.len() as f32, 1.0]).collect(),
            dim: 2,
            tokens: texts.iter().map(|t| t.len()).collect(),
        })
    }
}

fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder {
        info: ModelInfo {
            id: "recorder".into(),
            dim: 2,
            max_seq_length: 256,
            weights_sha256: String::new(),
        },
        calls: Mutex::new(Vec::new()),
        hold: AtomicBool::new(true),
    })
}

fn texts(prefix: &str, n: usize, len: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{i:0width$}", width = len - prefix.len()))
        .collect()
}

#[test]
fn queries_overtake_sliced_background_work_and_results_stay_in_order() {
    let rec = recorder();
    // 40-byte texts cost 12 estimated tokens: slices of 4 under a 48-token budget.
    let q = EmbedQueue::start(rec.clone(), 16, 64, 48);
    let bg = q.with_priority(Priority::Background);
    let big = texts("bg", 20, 40);
    let big_rx = bg.submit(big.clone()).unwrap();
    // Let the worker take (and block in) the first background slice: the
    // job leaves its lane while a slice of it runs.
    while !lanes_empty(&q) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let query_rx = q
        .with_priority(Priority::Query)
        .submit(vec!["what did we say?".into()])
        .unwrap();
    let write_rx = q.submit(texts("wr", 3, 40)).unwrap();
    rec.hold.store(false, Ordering::Release);

    let got = big_rx.blocking_recv().unwrap().unwrap();
    assert_eq!(got.len(), 20);
    assert!(got.rows().all(|r| r == [40.0, 1.0]));
    assert_eq!(got.tokens, vec![40; 20]);
    assert_eq!(query_rx.blocking_recv().unwrap().unwrap().len(), 1);
    assert_eq!(write_rx.blocking_recv().unwrap().unwrap().len(), 3);

    let calls = rec.calls.lock().clone();
    // First the slice already running, then the query, then the write, then
    // the rest of the background job in slices of 4.
    assert_eq!(calls[0], big[0..4]);
    assert_eq!(calls[1], ["what did we say?"]);
    assert_eq!(calls[2], texts("wr", 3, 40));
    let rest: Vec<String> = calls[3..].concat();
    assert_eq!(rest, big[4..]);
    assert!(calls[3..].iter().all(|c| c.len() == 4));
    // The worker answers a slice's jobs before it lowers the depth.
    wait_for_depth_zero(&q);
}

fn lanes_empty(q: &EmbedQueue) -> bool {
    q.shared.lanes.lock().lanes.iter().all(VecDeque::is_empty)
}

#[test]
fn waiting_queries_share_one_forward_pass_and_a_long_text_is_its_own_slice() {
    let rec = recorder();
    let q = EmbedQueue::start(rec.clone(), 16, 64, 48);
    let query = q.with_priority(Priority::Query);
    let rxs: Vec<_> = (0..5)
        .map(|i| query.submit(vec![format!("query {i}")]).unwrap())
        .collect();
    // One write far over the budget goes alone, then the rest.
    let long = "x".repeat(4000);
    let wrx = q.submit(vec![long.clone(), "short".into()]).unwrap();
    rec.hold.store(false, Ordering::Release);
    for rx in rxs {
        assert_eq!(rx.blocking_recv().unwrap().unwrap().len(), 1);
    }
    assert_eq!(wrx.blocking_recv().unwrap().unwrap().len(), 2);
    let calls = rec.calls.lock().clone();
    // The worker may have woken for the first query alone; all five are
    // answered in at most two passes, then the write in two slices.
    let query_passes = calls
        .iter()
        .take_while(|c| c[0].starts_with("query"))
        .count();
    assert!((1..=2).contains(&query_passes), "{calls:?}");
    assert_eq!(
        calls[query_passes..],
        [vec![long], vec!["short".to_string()]]
    );
}

/// Runs `f` on its own thread and returns its result, or fails the test when
/// it takes longer than `secs` (a hang is then a failure, not a stuck run).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("no answer in time: the caller would hang")
}

fn wait_for_depth_zero(q: &EmbedQueue) {
    let start = Instant::now();
    while q.depth() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "depth stays {}",
            q.depth()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_job_whose_caller_has_gone_is_never_embedded() {
    let rec = recorder();
    let q = EmbedQueue::start(rec.clone(), 16, 64, 48);
    let first = q.submit(vec!["first".into()]).unwrap();
    // The worker holds "first" (blocked in the embedder) while the others wait.
    while !lanes_empty(&q) {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(q.submit(vec!["abandoned".into()]).unwrap());
    let last = q.submit(vec!["last".into()]).unwrap();
    rec.hold.store(false, Ordering::Release);
    assert!(first.blocking_recv().unwrap().is_ok());
    assert_eq!(last.blocking_recv().unwrap().unwrap().len(), 1);
    let calls = rec.calls.lock().clone();
    assert_eq!(calls, [vec!["first".to_string()], vec!["last".to_string()]]);
    wait_for_depth_zero(&q);
}

/// Panics in every forward pass, once `hold` is cleared.
struct Panicker {
    info: ModelInfo,
    calls: AtomicUsize,
    hold: AtomicBool,
}

impl Embedder for Panicker {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn embed(&self, _texts: &[&str]) -> Result<Embeddings> {
        while self.hold.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        panic!("injected model panic");
    }
}

#[test]
fn a_panicking_model_fails_pending_and_new_requests_with_model_failed() {
    let model = Arc::new(Panicker {
        info: recorder().info.clone(),
        calls: AtomicUsize::new(0),
        hold: AtomicBool::new(true),
    });
    let q = EmbedQueue::start(model.clone(), 16, 64, 48);
    assert!(q.is_healthy());
    let running = q.submit(vec!["boom".into()]).unwrap();
    while !lanes_empty(&q) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let waiting = q
        .with_priority(Priority::Background)
        .submit(vec!["later".into()])
        .unwrap();
    model.hold.store(false, Ordering::Release);
    let (running, waiting) = within(10, move || {
        (running.blocking_recv(), waiting.blocking_recv())
    });
    for got in [running, waiting] {
        let err = got.expect("answered, not dropped").unwrap_err();
        assert_eq!(err.code(), "model_failed", "{err}");
        assert_eq!(err.kind(), crate::core::error::ErrorKind::Unavailable);
        assert!(err.to_string().contains("injected model panic"), "{err}");
    }
    assert!(!q.is_healthy());
    assert!(q.failure().unwrap().contains("injected model panic"));
    let later = q.with_priority(Priority::Query);
    let started = Instant::now();
    let err = within(10, move || later.embed_blocking(vec!["after".into()])).unwrap_err();
    assert_eq!(err.code(), "model_failed", "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        model.calls.load(Ordering::Relaxed),
        1,
        "the model ran again"
    );
    assert_eq!(q.depth(), 0);
}

#[test]
fn a_starved_lane_is_served_after_its_aging_bound() {
    let mut lanes: [VecDeque<Job>; 3] = Default::default();
    let now = Instant::now();
    let job = |since: Instant| Job {
        texts: vec!["t".into()],
        done: 0,
        data: Vec::new(),
        tokens: Vec::new(),
        reply: oneshot::channel().0,
        since,
        enqueued: since,
    };
    lanes[0].push_back(job(now));
    lanes[2].push_back(job(now - Duration::from_millis(500)));
    assert_eq!(pick(&lanes, now), Some(0));
    lanes[1].push_back(job(now - Duration::from_millis(250)));
    assert_eq!(pick(&lanes, now), Some(1), "write waited past 200 ms");
    lanes[2][0].since = now - Duration::from_secs(2);
    assert_eq!(
        pick(&lanes, now),
        Some(1),
        "the more urgent overdue lane first"
    );
    lanes[1].clear();
    assert_eq!(pick(&lanes, now), Some(2));
    lanes[0].clear();
    lanes[2].clear();
    assert_eq!(pick(&lanes, now), None);
}

#[test]
fn a_full_queue_rejects_at_once_and_dropping_the_last_handle_drains_it() {
    let rec = recorder();
    let q = EmbedQueue::start(rec.clone(), 2, 64, 48);
    let a = q.submit(vec!["a".into()]).unwrap();
    let b = q.submit(vec!["b".into()]).unwrap();
    assert!(matches!(
        q.submit(vec!["c".into()]),
        Err(Error::Overloaded { capacity: 2 })
    ));
    drop(q);
    rec.hold.store(false, Ordering::Release);
    assert!(a.blocking_recv().unwrap().is_ok());
    assert!(b.blocking_recv().unwrap().is_ok());
}
