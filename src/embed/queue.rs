//! A bounded, prioritized queue in front of one model worker thread.
//!
//! As in text-embeddings-inference: requests wait in a bounded queue; a dedicated
//! thread runs the model and answers each request through a oneshot. A full queue
//! is reported at once as [`Error::Overloaded`] (HTTP 429) instead of queueing
//! without bound.
//!
//! Unlike a plain FIFO, requests wait in three lanes ([`Priority`]): search
//! queries, writes, background work (summaries). The worker serves the most urgent
//! waiting lane and cuts writes and background work into slices of about
//! `slice_tokens` tokens, so a query arriving behind a 1,000-text import or a
//! summarizer's 200 sentences waits for one slice (~40 ms for 256 tokens here),
//! not for the whole job. Waiting queries are merged into one forward pass (up to
//! `max_batch_texts`). So that a steady stream of queries cannot starve the other
//! lanes, a lane whose oldest request has waited longer than its aging bound
//! (writes 200 ms, background 1 s) is served one slice next.
//!
//! A request whose caller has gone (its future dropped, e.g. a client that
//! disconnected) is dropped when the worker reaches it, not embedded. A model
//! that panics stops the worker for good: the requests in flight and waiting, and
//! every later one, fail at once with [`Error::ModelFailed`], and
//! [`EmbedQueue::is_healthy`] turns false.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::{Embedder, Embeddings, ModelInfo};
use crate::core::error::{Error, Result};

/// Which lane an embedding request waits in; lanes are served in this order
/// (most urgent first), subject to aging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A search query: someone is waiting for the answer right now.
    Query,
    /// Messages being written and explicit embedding requests (the default).
    Write,
    /// Work nobody waits on: summarization's sentence and summary embeddings.
    Background,
}

impl Priority {
    const ALL: [Priority; 3] = [Priority::Query, Priority::Write, Priority::Background];

    fn lane(self) -> usize {
        self as usize
    }

    /// The label used in metrics (`query`, `write`, `background`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Query => "query",
            Priority::Write => "write",
            Priority::Background => "background",
        }
    }

    /// How long the oldest request of this lane may wait behind more urgent
    /// lanes before it is served one slice anyway.
    fn aging(self) -> Duration {
        match self {
            Priority::Query => Duration::ZERO,
            Priority::Write => Duration::from_millis(200),
            Priority::Background => Duration::from_secs(1),
        }
    }
}

struct Job {
    texts: Vec<String>,
    /// Texts of `texts` already embedded (their rows are in `data`).
    done: usize,
    data: Vec<f32>,
    tokens: Vec<usize>,
    reply: oneshot::Sender<Result<Embeddings>>,
    /// When the job entered its lane, or last got a slice.
    since: Instant,
    enqueued: Instant,
}

#[derive(Default)]
struct Lanes {
    lanes: [VecDeque<Job>; 3],
    /// No handle is left: finish what is queued, then stop.
    closed: bool,
    /// The worker has stopped on a panic, for this reason: every request fails.
    failed: Option<String>,
}

struct Shared {
    lanes: Mutex<Lanes>,
    ready: Condvar,
    /// Requests waiting or running.
    depth: AtomicUsize,
    /// False once the worker has stopped on a panic (`Lanes::failed` says why).
    healthy: AtomicBool,
}

impl Shared {
    /// Marks the worker as dead for `reason` and fails every waiting request;
    /// later submissions fail at once.
    fn fail(&self, reason: String) {
        tracing::error!("embedding worker stopped: {reason}");
        metrics::counter!("memoryd_embed_worker_failures_total").increment(1);
        let waiting: Vec<Job> = {
            let mut lanes = self.lanes.lock();
            lanes.failed = Some(reason.clone());
            self.healthy.store(false, Ordering::Release);
            lanes.lanes.iter_mut().flat_map(|l| l.drain(..)).collect()
        };
        for job in waiting {
            let _ = job.reply.send(Err(Error::ModelFailed(reason.clone())));
        }
        // Nothing runs or waits any more, and nothing can be submitted.
        self.depth.store(0, Ordering::Relaxed);
        metrics::gauge!("memoryd_embed_queue_depth").set(0.0);
    }

    /// The error for a request whose worker dropped it unanswered: only a worker
    /// that died does that.
    fn worker_gone(&self) -> Error {
        let reason = self.lanes.lock().failed.clone();
        Error::ModelFailed(reason.unwrap_or_else(|| "the embedding worker stopped".into()))
    }
}

/// Closes the queue when the last [`EmbedQueue`] handle is dropped.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.lanes.lock().closed = true;
        self.0.ready.notify_all();
    }
}

/// Handle to the embedding worker. Cloning is cheap; the worker stops when the
/// last handle is dropped, after answering what is queued.
#[derive(Clone)]
pub struct EmbedQueue {
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
    capacity: usize,
    priority: Priority,
    info: ModelInfo,
}

/// How the worker cuts and merges requests.
#[derive(Debug, Clone, Copy)]
struct Slicing {
    max_batch_texts: usize,
    slice_tokens: usize,
    max_seq_length: usize,
}

impl Slicing {
    /// Estimated tokens of `text` after truncation: ~4 bytes per WordPiece token
    /// of English text plus `[CLS]`/`[SEP]`, at most the model's limit. Only
    /// used to size slices.
    fn cost(&self, text: &str) -> usize {
        (text.len() / 4 + 2).min(self.max_seq_length)
    }
}

impl EmbedQueue {
    /// Starts the worker thread. `capacity` is the number of requests that may
    /// wait (each request may hold many texts); `max_batch_texts` caps the texts
    /// of one forward pass; writes and background work are cut into slices of
    /// at most ~`slice_tokens` estimated tokens (at least one text each). Handles
    /// submit in the [`Priority::Write`] lane until [`EmbedQueue::with_priority`].
    pub fn start(
        embedder: Arc<dyn Embedder>,
        capacity: usize,
        max_batch_texts: usize,
        slice_tokens: usize,
    ) -> Self {
        let capacity = capacity.max(1);
        let info = embedder.info().clone();
        let shared = Arc::new(Shared {
            lanes: Mutex::new(Lanes::default()),
            ready: Condvar::new(),
            depth: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
        });
        let slicing = Slicing {
            max_batch_texts: max_batch_texts.max(1),
            slice_tokens: slice_tokens.max(1),
            max_seq_length: info.max_seq_length.max(1),
        };
        let worker_shared = shared.clone();
        std::thread::Builder::new()
            .name("memoryd-embed".into())
            .spawn(move || worker(embedder, worker_shared, slicing))
            .expect("spawning the embedding thread");
        EmbedQueue {
            _closer: Arc::new(Closer(shared.clone())),
            shared,
            capacity,
            priority: Priority::Write,
            info,
        }
    }

    /// A handle to the same worker whose requests wait in `priority`'s lane.
    pub fn with_priority(&self, priority: Priority) -> EmbedQueue {
        EmbedQueue {
            priority,
            ..self.clone()
        }
    }

    /// The lane this handle submits to.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The model's identity and shape.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Requests waiting or running now, all lanes.
    pub fn depth(&self) -> usize {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// The queue's capacity in requests, all lanes together.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// False once the model has panicked: the worker has stopped and every
    /// request fails with [`Error::ModelFailed`] until the process restarts.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// Why the worker stopped, once it has (see [`EmbedQueue::is_healthy`]).
    pub fn failure(&self) -> Option<String> {
        self.shared.lanes.lock().failed.clone()
    }

    fn submit(&self, texts: Vec<String>) -> Result<oneshot::Receiver<Result<Embeddings>>> {
        let (reply, rx) = oneshot::channel();
        let now = Instant::now();
        let mut lanes = self.shared.lanes.lock();
        if let Some(reason) = &lanes.failed {
            return Err(Error::ModelFailed(reason.clone()));
        }
        if lanes.closed {
            return Err(Error::ShuttingDown);
        }
        let depth = self.shared.depth.load(Ordering::Relaxed);
        if depth >= self.capacity {
            metrics::counter!("memoryd_embed_rejected_total").increment(1);
            return Err(Error::Overloaded {
                capacity: self.capacity,
            });
        }
        lanes.lanes[self.priority.lane()].push_back(Job {
            data: Vec::with_capacity(texts.len() * self.info.dim),
            tokens: Vec::with_capacity(texts.len()),
            texts,
            done: 0,
            reply,
            since: now,
            enqueued: now,
        });
        self.shared.depth.store(depth + 1, Ordering::Relaxed);
        drop(lanes);
        metrics::gauge!("memoryd_embed_queue_depth").set((depth + 1) as f64);
        self.shared.ready.notify_one();
        Ok(rx)
    }

    /// Embeds `texts` (`[texts.len(), dim]`, input order) without blocking the
    /// runtime, in this handle's lane.
    ///
    /// # Errors
    /// [`Error::Overloaded`] at once when the queue is full; [`Error::Embedding`]
    /// when the model returns an error; [`Error::ModelFailed`] when the model
    /// panicked, for this request and at once for every later one;
    /// [`Error::ShuttingDown`] when the queue is closed.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings> {
        if texts.is_empty() {
            return Ok(self.empty());
        }
        self.submit(texts)?
            .await
            .map_err(|_| self.shared.worker_gone())?
    }

    /// Blocking variant of [`EmbedQueue::embed`] for synchronous callers. Must not
    /// be called from inside an async runtime.
    ///
    /// # Errors
    /// As [`EmbedQueue::embed`].
    pub fn embed_blocking(&self, texts: Vec<String>) -> Result<Embeddings> {
        if texts.is_empty() {
            return Ok(self.empty());
        }
        self.submit(texts)?
            .blocking_recv()
            .map_err(|_| self.shared.worker_gone())?
    }

    fn empty(&self) -> Embeddings {
        Embeddings {
            data: Vec::new(),
            dim: self.info.dim,
            tokens: Vec::new(),
        }
    }
}

/// The lane to serve next: the most urgent non-empty one, unless a less urgent
/// lane's head has waited past its aging bound (then the most urgent such lane).
fn pick(lanes: &[VecDeque<Job>; 3], now: Instant) -> Option<usize> {
    let first = lanes.iter().position(|l| !l.is_empty())?;
    let overdue = Priority::ALL[first + 1..].iter().find(|p| {
        lanes[p.lane()]
            .front()
            .is_some_and(|j| now.duration_since(j.since) >= p.aging())
    });
    Some(overdue.map_or(first, |p| p.lane()))
}

/// Takes the next slice from `lane`: whole jobs and at most one partial one (left
/// at the front). Returns the jobs with the range of their texts to embed, and
/// how many jobs it dropped because their caller had gone.
fn take_slice(lane: &mut VecDeque<Job>, query: bool, s: &Slicing) -> (Vec<(Job, usize)>, usize) {
    let mut taken = Vec::new();
    let mut dropped = 0;
    let (mut texts, mut cost) = (0usize, 0usize);
    while let Some(job) = lane.front() {
        if job.reply.is_closed() {
            // Nobody waits for the answer: skip the work.
            lane.pop_front();
            dropped += 1;
            continue;
        }
        let mut end = job.done;
        while end < job.texts.len() && texts < s.max_batch_texts {
            let c = s.cost(&job.texts[end]);
            if !query && texts > 0 && cost + c > s.slice_tokens {
                break;
            }
            cost += c;
            texts += 1;
            end += 1;
        }
        if end == job.done {
            break;
        }
        let whole = end == job.texts.len();
        let job = lane.pop_front().expect("front exists");
        taken.push((job, end));
        if !whole {
            break;
        }
    }
    (taken, dropped)
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn worker(embedder: Arc<dyn Embedder>, shared: Arc<Shared>, slicing: Slicing) {
    // `serve` catches the model's panics itself; this catches the queue's own,
    // so that no panic leaves callers waiting on a queue nobody serves.
    let served = catch_unwind(AssertUnwindSafe(|| serve(&*embedder, &shared, slicing)));
    if let Err(payload) = served {
        shared.fail(format!(
            "the embedding worker panicked: {}",
            panic_message(&*payload)
        ));
    }
}

/// Serves the lanes until the queue is closed and drained, or the model panics.
fn serve(embedder: &dyn Embedder, shared: &Shared, slicing: Slicing) {
    loop {
        let (lane, mut jobs) = {
            let mut lanes = shared.lanes.lock();
            loop {
                if let Some(lane) = pick(&lanes.lanes, Instant::now()) {
                    let query = lane == Priority::Query.lane();
                    let (taken, dropped) = take_slice(&mut lanes.lanes[lane], query, &slicing);
                    if dropped > 0 {
                        metrics::counter!(
                            "memoryd_embed_cancelled_total",
                            "lane" => Priority::ALL[lane].as_str()
                        )
                        .increment(dropped as u64);
                        let d = shared.depth.fetch_sub(dropped, Ordering::Relaxed) - dropped;
                        metrics::gauge!("memoryd_embed_queue_depth").set(d as f64);
                        if taken.is_empty() {
                            continue;
                        }
                    }
                    break (lane, taken);
                }
                if lanes.closed {
                    return;
                }
                shared.ready.wait(&mut lanes);
            }
        };
        let texts: Vec<&str> = jobs
            .iter()
            .flat_map(|(j, end)| j.texts[j.done..*end].iter().map(String::as_str))
            .collect();
        metrics::histogram!("memoryd_embed_batch_size", "lane" => Priority::ALL[lane].as_str())
            .record(texts.len() as f64);
        // The model's state after a panic is unknown: it is not run again.
        let result = match catch_unwind(AssertUnwindSafe(|| embedder.embed(&texts))) {
            Ok(result) => result,
            Err(payload) => {
                let reason = format!("the model panicked: {}", panic_message(&*payload));
                drop(texts);
                shared.fail(reason.clone());
                for (job, _) in jobs.drain(..) {
                    let _ = job.reply.send(Err(Error::ModelFailed(reason.clone())));
                }
                return;
            }
        };
        drop(texts);
        let mut finished = 0;
        let mut unfinished = None;
        match result {
            Ok(all) => {
                let dim = all.dim;
                let mut row = 0;
                for (mut job, end) in jobs.drain(..) {
                    let n = end - job.done;
                    job.data
                        .extend_from_slice(&all.data[row * dim..(row + n) * dim]);
                    job.tokens.extend_from_slice(&all.tokens[row..row + n]);
                    job.done = end;
                    row += n;
                    if job.done < job.texts.len() {
                        job.since = Instant::now();
                        unfinished = Some(job);
                        continue;
                    }
                    finished += 1;
                    metrics::histogram!(
                        "memoryd_embed_wait_seconds",
                        "lane" => Priority::ALL[lane].as_str()
                    )
                    .record(job.enqueued.elapsed().as_secs_f64());
                    let _ = job.reply.send(Ok(Embeddings {
                        data: job.data,
                        dim,
                        tokens: job.tokens,
                    }));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (job, _) in jobs.drain(..) {
                    finished += 1;
                    let _ = job.reply.send(Err(Error::Embedding(msg.clone())));
                }
            }
        }
        if let Some(job) = unfinished {
            shared.lanes.lock().lanes[lane].push_front(job);
        }
        let d = shared.depth.fetch_sub(finished, Ordering::Relaxed) - finished;
        metrics::gauge!("memoryd_embed_queue_depth").set(d as f64);
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
