//! A bounded queue in front of one model worker thread.
//!
//! As in text-embeddings-inference: requests wait in a bounded channel; a
//! dedicated thread runs the model and answers each request through a oneshot.
//! A full queue is reported at once as [`Error::Overloaded`] (HTTP 429) instead of
//! queueing without bound. The worker drains whatever is waiting (up to
//! `max_batch_texts`) into one model call, so concurrent single queries share a
//! forward pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use tokio::sync::oneshot;

use super::{Embedder, Embeddings, ModelInfo};
use crate::error::{Error, Result};

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Embeddings>>,
}

/// Handle to the embedding worker. Cloning is cheap; the worker stops when the
/// last handle is dropped.
#[derive(Clone)]
pub struct EmbedQueue {
    tx: SyncSender<Job>,
    capacity: usize,
    depth: Arc<AtomicUsize>,
    info: ModelInfo,
}

impl EmbedQueue {
    /// Starts the worker thread. `capacity` is the number of requests that may
    /// wait (each request may hold many texts); `max_batch_texts` caps how many
    /// texts of waiting requests are merged into one model call.
    pub fn start(embedder: Arc<dyn Embedder>, capacity: usize, max_batch_texts: usize) -> Self {
        let capacity = capacity.max(1);
        let (tx, rx) = sync_channel::<Job>(capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let info = embedder.info().clone();
        let worker_depth = depth.clone();
        std::thread::Builder::new()
            .name("memoryd-embed".into())
            .spawn(move || worker(embedder, rx, worker_depth, max_batch_texts.max(1)))
            .expect("spawning the embedding thread");
        EmbedQueue {
            tx,
            capacity,
            depth,
            info,
        }
    }

    /// The model's identity and shape.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Requests waiting or running now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// The queue's capacity in requests.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn submit(&self, texts: Vec<String>) -> Result<oneshot::Receiver<Result<Embeddings>>> {
        let (reply, rx) = oneshot::channel();
        // Count before sending so the worker's decrement never runs first.
        let d = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        match self.tx.try_send(Job { texts, reply }) {
            Ok(()) => {
                metrics::gauge!("memoryd_embed_queue_depth").set(d as f64);
                Ok(rx)
            }
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => {
                        metrics::counter!("memoryd_embed_rejected_total").increment(1);
                        Err(Error::Overloaded {
                            capacity: self.capacity,
                        })
                    }
                    TrySendError::Disconnected(_) => Err(Error::ShuttingDown),
                }
            }
        }
    }

    /// Embeds `texts` (`[texts.len(), dim]`, input order) without blocking the runtime.
    ///
    /// # Errors
    /// [`Error::Overloaded`] at once when the queue is full; [`Error::Embedding`]
    /// when the model fails; [`Error::ShuttingDown`] when the worker is gone.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings> {
        if texts.is_empty() {
            return Ok(self.empty());
        }
        self.submit(texts)?.await.map_err(|_| Error::ShuttingDown)?
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
            .map_err(|_| Error::ShuttingDown)?
    }

    fn empty(&self) -> Embeddings {
        Embeddings {
            data: Vec::new(),
            dim: self.info.dim,
            tokens: Vec::new(),
        }
    }
}

fn worker(
    embedder: Arc<dyn Embedder>,
    rx: Receiver<Job>,
    depth: Arc<AtomicUsize>,
    max_batch_texts: usize,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut total = jobs[0].texts.len();
        while total < max_batch_texts {
            match rx.try_recv() {
                Ok(job) => {
                    total += job.texts.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("memoryd_embed_batch_size").record(total as f64);
        let texts: Vec<&str> = jobs
            .iter()
            .flat_map(|j| j.texts.iter().map(String::as_str))
            .collect();
        let result = embedder.embed(&texts);
        let n_jobs = jobs.len();
        match result {
            Ok(all) => {
                let dim = all.dim;
                let mut offset = 0;
                for job in jobs {
                    let n = job.texts.len();
                    let part = Embeddings {
                        data: all.data[offset * dim..(offset + n) * dim].to_vec(),
                        dim,
                        tokens: all.tokens[offset..offset + n].to_vec(),
                    };
                    offset += n;
                    let _ = job.reply.send(Ok(part));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(Error::Embedding(msg.clone())));
                }
            }
        }
        let d = depth.fetch_sub(n_jobs, Ordering::Relaxed) - n_jobs;
        metrics::gauge!("memoryd_embed_queue_depth").set(d as f64);
    }
}
