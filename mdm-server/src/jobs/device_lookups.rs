//! Device certificate checks, gathered into batches.
//!
//! Every request on the device listener is checked against the database, so that a revocation
//! works at once. With thousands of phones that would be thousands of one-row queries a second,
//! each paying the database round trip. Instead, at most [`CONCURRENT_LOOKUPS`] lookups run at
//! once, and the requests that arrive meanwhile queue up; a lookup that ends takes everything
//! queued into its next query. A request only ever waits for the answer to its own query. Every
//! request is still answered by a query that started after the request arrived: nothing is
//! served from a cache.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

use crate::store::{DeviceSession, Store, StoreError, StoreResult};

/// How many batched lookups may run at once; more requests wait and join the next batch. One:
/// the batch then holds everything that arrived during the last query, so the batches grow with
/// the load and with the database's round trip. With two, the batches were half as large and
/// the database spent half as much again per check-in (`cargo bench --bench checkins`).
const CONCURRENT_LOOKUPS: usize = 1;

type Answer = Result<Option<DeviceSession>, String>;

struct Waiting {
    fingerprint: String,
    now: DateTime<Utc>,
    reply: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// Lookups running now, at most [`CONCURRENT_LOOKUPS`].
    running: usize,
}

struct Shared {
    store: Arc<dyn Store>,
    queue: Mutex<Queue>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct DeviceLookups {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DeviceLookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.shared.lock();
        f.debug_struct("DeviceLookups")
            .field("running", &queue.running)
            .field("waiting", &queue.waiting.len())
            .finish_non_exhaustive()
    }
}

impl DeviceLookups {
    pub fn new(store: Arc<dyn Store>) -> Self {
        DeviceLookups {
            shared: Arc::new(Shared {
                store,
                queue: Mutex::new(Queue::default()),
            }),
        }
    }

    /// The device behind a live certificate with this fingerprint, if there is one.
    pub async fn session(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeviceSession>> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.shared.lock();
            queue.waiting.push(Waiting {
                fingerprint: fingerprint.to_string(),
                now,
                reply,
            });
            let start = queue.running < CONCURRENT_LOOKUPS;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            // Runs apart from this request, so that the others in its batch (and those queued
            // behind it) get their answers even if this request's client goes away.
            tokio::spawn(run_lookups(Running(Some(self.shared.clone()))));
        }
        match answer.await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(text)) => Err(StoreError::Batch(text)),
            Err(_) => Err(StoreError::Batch("the lookup was abandoned".into())),
        }
    }
}

/// One of the running lookups. Should its task end without handing its turn back (a panic in
/// the store), dropping this hands the turn on to a new task, or back if nobody is waiting.
struct Running(Option<Arc<Shared>>);

impl Drop for Running {
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else {
            return;
        };
        let waiting = {
            let mut queue = shared.lock();
            if queue.waiting.is_empty() {
                queue.running -= 1;
            }
            !queue.waiting.is_empty()
        };
        // Not when the runtime itself is going away: then the waiting requests go with it.
        if let (true, Ok(runtime)) = (waiting, tokio::runtime::Handle::try_current()) {
            runtime.spawn(run_lookups(Running(Some(shared))));
        }
    }
}

/// Answers whatever is queued, batch after batch, until nothing is waiting.
async fn run_lookups(mut running: Running) {
    let Some(shared) = running.0.clone() else {
        return;
    };
    loop {
        // Before taking the batch, let the other tasks that are ready run: connections whose
        // requests have arrived queue them here and go in this batch, not one of their own.
        // The benchmark's batches went from about ten certificates to over twenty this way.
        tokio::task::yield_now().await;
        let batch = {
            let mut queue = shared.lock();
            if queue.waiting.is_empty() {
                // The turn is handed back under the same lock a request checks it with, so no
                // request can queue up unseen between the two.
                queue.running -= 1;
                running.0 = None;
                return;
            }
            std::mem::take(&mut queue.waiting)
        };
        answer_batch(shared.store.as_ref(), batch).await;
    }
}

async fn answer_batch(store: &dyn Store, batch: Vec<Waiting>) {
    // The query starts now, after every request in the batch arrived: the latest of their
    // times is the one certificates must still be valid at.
    let Some(now) = batch.iter().map(|w| w.now).max() else {
        return;
    };
    let mut fingerprints: Vec<String> = batch.iter().map(|w| w.fingerprint.clone()).collect();
    fingerprints.sort_unstable();
    fingerprints.dedup();
    match store.device_sessions(&fingerprints, now).await {
        Ok(sessions) => {
            for waiting in batch {
                let session = sessions.get(&waiting.fingerprint).cloned();
                let _ = waiting.reply.send(Ok(session));
            }
        }
        Err(e) => {
            let text = e.to_string();
            for waiting in batch {
                let _ = waiting.reply.send(Err(text.clone()));
            }
        }
    }
}
