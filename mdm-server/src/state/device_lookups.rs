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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::AuditEvent;
    use crate::domain::device::{Imei, Platform, Serial};
    use crate::store::{DeviceFilter, NewDevice};

    /// A SQLite store with `count` phones, each with a live certificate whose fingerprint is
    /// `print(n)`, and a second connection to the same file for changing it behind the store.
    async fn fleet(count: u32) -> (tempfile::TempDir, Arc<dyn Store>, sqlx::SqlitePool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("mdm.sqlite3").display());
        let store = crate::store::open(&url).await.expect("store");
        store.migrate().await.expect("migrations");
        let now = Utc::now();
        let model = store
            .create_model(
                Platform::Ios,
                "iPhone 16",
                None,
                now,
                AuditEvent::unattended("test", "model.create"),
            )
            .await
            .expect("model");
        let phones: Vec<NewDevice> = (0..count)
            .map(|n| {
                let body = format!("35{n:012}");
                let imei = format!("{body}{}", crate::domain::luhn::check_digit(&body));
                NewDevice {
                    serial: Serial::parse(&format!("LOOKUP{n:04}")).expect("serial"),
                    imei: Imei::parse(&imei).expect("imei"),
                    model_id: model.id,
                    platform: Platform::Ios,
                    provider_id: None,
                    purchase_date: None,
                    warranty_end: None,
                    supplier: None,
                }
            })
            .collect();
        store
            .import_devices(
                &phones,
                now,
                AuditEvent::unattended("test", "device.import"),
                &|_| {},
            )
            .await
            .expect("import");
        let devices = store
            .list_devices(&DeviceFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("devices");
        let side = sqlx::SqlitePool::connect(&url).await.expect("side door");
        for device in &devices {
            let n: u32 = device.serial["LOOKUP".len()..].parse().expect("number");
            sqlx::query(
                "INSERT INTO device_identities \
                 (serial, device_id, fingerprint, key_kind, not_before, not_after, created_at) \
                 VALUES ($1, $2, $3, 'p256', $4, $5, $4)",
            )
            .bind(format!("{n:032x}"))
            .bind(device.id)
            .bind(print(n))
            .bind(now - chrono::Duration::hours(1))
            .bind(now + chrono::Duration::days(365))
            .execute(&side)
            .await
            .expect("identity");
        }
        (dir, store, side)
    }

    fn print(n: u32) -> String {
        format!("{n:064x}")
    }

    /// The lookup for phone `n`'s certificate. A turn that is never handed back shows as a
    /// request left waiting: this fails then instead of hanging the suite.
    async fn ask(lookups: &DeviceLookups, n: u32) -> StoreResult<Option<DeviceSession>> {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            lookups.session(&print(n), Utc::now()),
        )
        .await
        .expect("no answer within 10 s: the lookup's turn was lost")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_arriving_together_are_each_answered_with_their_own_device() {
        let (_dir, store, _) = fleet(40).await;
        let lookups = Arc::new(DeviceLookups::new(store));
        // Each phone five times, and as many unknown certificates, all at once.
        let asks: Vec<_> = (0..400u32)
            .map(|i| {
                let lookups = lookups.clone();
                tokio::spawn(async move {
                    let n = if i % 2 == 0 { i / 2 % 40 } else { 1000 + i };
                    (n, ask(&lookups, n).await)
                })
            })
            .collect();
        for ask in asks {
            let (n, answer) = ask.await.expect("task");
            let session = answer.expect("lookup");
            match session {
                Some(session) => assert_eq!(session.serial, format!("LOOKUP{n:04}")),
                None => assert!(n >= 1000, "phone {n} was not found"),
            }
        }
        // The last lookup hands its turn back just after its answers are out: give it a moment.
        let idle = || {
            let queue = lookups.shared.lock();
            (queue.running, queue.waiting.len()) == (0, 0)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !idle() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(idle(), "a lookup still holds its turn with nothing waiting");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_lookup_answers_its_requests_with_the_error_and_the_next_one_runs() {
        let (_dir, store, side) = fleet(3).await;
        let lookups = DeviceLookups::new(store);
        let now = Utc::now();
        assert!(lookups
            .session(&print(1), now)
            .await
            .expect("lookup")
            .is_some());
        sqlx::query("ALTER TABLE device_identities RENAME TO device_identities_away")
            .execute(&side)
            .await
            .expect("rename");
        let failed = ask(&lookups, 1).await;
        assert!(matches!(failed, Err(StoreError::Batch(_))), "{failed:?}");
        sqlx::query("ALTER TABLE device_identities_away RENAME TO device_identities")
            .execute(&side)
            .await
            .expect("rename back");
        let session = ask(&lookups, 2).await.expect("lookup");
        assert_eq!(session.expect("found").serial, "LOOKUP0002");
    }
}
