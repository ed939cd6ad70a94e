//! Check-in times, written in batches.
//!
//! A check-in whose facts did not change writes nothing but the time it happened. Doing that in
//! its own transaction makes every check-in a database write, so the times are gathered in
//! memory and written once a second in one transaction. What a device reports is never kept
//! back this way: changed facts are stored before the check-in is acknowledged. A crash loses at
//! most a second of check-in times, which the next check-in of each device puts right.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{Store, StoreResult};

pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Default)]
pub struct CheckinTimes {
    pending: Arc<Mutex<HashMap<i64, DateTime<Utc>>>>,
}

impl CheckinTimes {
    pub fn note(&self, device_id: i64, at: DateTime<Utc>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.entry(device_id).or_insert(at);
        if *entry < at {
            *entry = at;
        }
    }

    /// Writes what has gathered; on failure the times are kept for the next try.
    pub async fn flush(&self, store: &dyn Store) -> StoreResult<usize> {
        let batch: Vec<(i64, DateTime<Utc>)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(e) = store.touch_checkins(&batch).await {
            for (id, at) in batch {
                self.note(id, at);
            }
            return Err(e);
        }
        Ok(batch.len())
    }

    /// Flushes every [`FLUSH_EVERY`] until `stop` says so, then once more.
    pub async fn run(self, store: Arc<dyn Store>, stop: tokio::sync::watch::Receiver<bool>) {
        crate::clock::repeat(FLUSH_EVERY, stop, "writing check-in times", || {
            self.flush(store.as_ref())
        })
        .await;
        if let Err(e) = self.flush(store.as_ref()).await {
            tracing::warn!(error = %e, "could not write the last check-in times");
        }
    }
}
