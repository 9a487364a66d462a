//! Memory policy: what stays in short-term memory, when messages are due for a
//! summary, and the background-job runner that acts on it.
//!
//! - [`ShortTerm`]: per namespace, the bounded ring buffer of the newest messages
//!   (the design's `deque(maxlen=100)`) and the queue of messages not yet covered by
//!   a summary.
//! - [`JobRunner`]: one thread with its own small runtime that runs every
//!   registered [`Job`] each tick (summarization, change-log retention) and stops
//!   when its owner is dropped.

use std::collections::VecDeque;
use std::sync::Weak;
use std::time::Duration;

use crate::core::error::Result;
use crate::storage::RowId;
use crate::summarize::BoxFuture;

/// Short-term memory of one namespace: rows only (records live in the store).
#[derive(Debug, Default)]
pub struct ShortTerm {
    /// Newest at the back; rows of the last `capacity` messages.
    recent: VecDeque<RowId>,
    /// Unsummarized messages in row order: (row, insertion time in ms since the epoch).
    pending: VecDeque<(RowId, i64)>,
}

impl ShortTerm {
    /// Records a new message: into the ring buffer (dropping the oldest past
    /// `capacity`; `capacity` 0 keeps none) and the unsummarized queue.
    pub fn push(&mut self, row: RowId, inserted_ms: i64, capacity: usize, unsummarized: bool) {
        if capacity > 0 {
            while self.recent.len() >= capacity {
                self.recent.pop_front();
            }
            self.recent.push_back(row);
        }
        if unsummarized {
            self.pending.push_back((row, inserted_ms));
        }
    }

    /// Forgets deleted rows.
    pub fn remove(&mut self, rows: &[RowId]) {
        self.recent.retain(|r| !rows.contains(r));
        self.pending.retain(|(r, _)| !rows.contains(r));
    }

    /// Marks every row at or below `upto` summarized.
    pub fn summarized(&mut self, upto: RowId) {
        self.pending.retain(|&(r, _)| r > upto);
    }

    /// The newest `n` rows, newest first.
    pub fn recent(&self, n: usize) -> Vec<RowId> {
        self.recent.iter().rev().take(n).copied().collect()
    }

    /// Messages waiting for a summary.
    pub fn unsummarized(&self) -> usize {
        self.pending.len()
    }

    /// The next window to summarize: the oldest `every` unsummarized rows, if a
    /// trigger fires (`force`; `every` of them waiting; or the oldest waited
    /// `after`, measured against `now_ms`).
    pub fn due_window(
        &self,
        every: usize,
        after: Duration,
        now_ms: i64,
        force: bool,
    ) -> Option<Vec<RowId>> {
        let every = every.max(1);
        let stale = self
            .pending
            .front()
            .is_some_and(|&(_, t)| now_ms - t >= after.as_millis() as i64);
        if self.pending.is_empty() || !(force || stale || self.pending.len() >= every) {
            return None;
        }
        Some(self.pending.iter().take(every).map(|&(r, _)| r).collect())
    }
}

/// A background job: run once per tick by the [`JobRunner`].
pub trait Job<T>: Send + Sync + 'static {
    /// The job's name, for logs.
    fn name(&self) -> &'static str;
    /// One run over the owner's state.
    fn run<'a>(&'a self, owner: &'a std::sync::Arc<T>) -> BoxFuture<'a, Result<()>>;
}

/// Runs jobs over an owner held weakly, every `tick`, on its own thread and
/// runtime, so background work never competes with request handling on the
/// server's runtime. Stops when the owner is dropped.
pub struct JobRunner;

impl JobRunner {
    /// Starts the runner thread. A job's error is logged and retried next tick.
    pub fn start<T: Send + Sync + 'static>(
        owner: Weak<T>,
        tick: Duration,
        jobs: Vec<Box<dyn Job<T>>>,
    ) {
        let spawned = std::thread::Builder::new()
            .name("memoryd-jobs".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    tracing::error!("cannot start the background-job runtime; background jobs are off");
                    return;
                };
                loop {
                    let Some(strong) = owner.upgrade() else { return };
                    for job in &jobs {
                        if let Err(e) = rt.block_on(job.run(&strong)) {
                            tracing::warn!(job = job.name(), error = %e, "background job failed; will retry");
                        }
                    }
                    drop(strong);
                    std::thread::sleep(tick);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the background-job thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_keeps_the_newest_and_windows_follow_triggers() {
        let mut st = ShortTerm::default();
        for row in 1..=5 {
            st.push(row, 1_000 * row as i64, 3, true);
        }
        assert_eq!(st.recent(10), [5, 4, 3]);
        assert_eq!(st.unsummarized(), 5);
        let hour = Duration::from_secs(3600);
        assert_eq!(st.due_window(10, hour, 10_000, false), None);
        assert_eq!(
            st.due_window(4, hour, 10_000, false),
            Some(vec![1, 2, 3, 4])
        );
        assert_eq!(
            st.due_window(10, hour, 10_000, true),
            Some(vec![1, 2, 3, 4, 5])
        );
        // The oldest has waited an hour: due.
        assert_eq!(
            st.due_window(10, hour, 1_000 + 3_600_000, false),
            Some(vec![1, 2, 3, 4, 5])
        );
        st.remove(&[4]);
        assert_eq!(st.recent(10), [5, 3]);
        st.summarized(3);
        assert_eq!(st.unsummarized(), 1);
        let mut none = ShortTerm::default();
        none.push(1, 0, 0, false);
        assert!(none.recent(10).is_empty());
        assert_eq!(none.unsummarized(), 0);
    }
}
