//! Device certificate checks, gathered into batches.
//!
//! Every request on the device listener is checked against the database, so that a revocation
//! works at once. With thousands of phones that would be thousands of one-row queries a second,
//! each paying the database round trip. Instead, the requests that arrive while lookups are
//! running wait for a free slot and then go together in one query. Every request is still
//! answered by a query that started after the request arrived: nothing is served from a cache.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Semaphore};

use crate::store::{DeviceSession, Store, StoreError, StoreResult};

/// How many batched lookups may run at once; more requests wait and join the next batch.
const CONCURRENT_LOOKUPS: usize = 2;

type Answer = Result<Option<DeviceSession>, String>;

struct Waiting {
    fingerprint: String,
    reply: oneshot::Sender<Answer>,
}

pub struct DeviceLookups {
    store: Arc<dyn Store>,
    pending: Mutex<Vec<Waiting>>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for DeviceLookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLookups")
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl DeviceLookups {
    pub fn new(store: Arc<dyn Store>) -> Self {
        DeviceLookups {
            store,
            pending: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(CONCURRENT_LOOKUPS)),
        }
    }

    /// The device behind a live certificate with this fingerprint, if there is one.
    pub async fn session(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeviceSession>> {
        let (reply, answer) = oneshot::channel();
        self.lock().push(Waiting {
            fingerprint: fingerprint.to_string(),
            reply,
        });
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Batch("the lookup slots are closed".into()))?;
        let batch = std::mem::take(&mut *self.lock());
        if batch.is_empty() {
            // An earlier batch took this request along.
            drop(slot);
        } else {
            // Run apart from this request, so that the others in the batch get their answers
            // even if this request's client goes away.
            tokio::spawn(answer_batch(self.store.clone(), batch, now, slot));
        }
        match answer.await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(text)) => Err(StoreError::Batch(text)),
            Err(_) => Err(StoreError::Batch("the lookup was abandoned".into())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn answer_batch(
    store: Arc<dyn Store>,
    batch: Vec<Waiting>,
    now: DateTime<Utc>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
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
