//! Waking iPhones through Apple's push service: an iPhone connects only when pushed (or when it
//! feels like it), so every command queued for one is followed by a push.
//!
//! The command board collects the phones marked since the last round; a round waits
//! `push_coalesce_ms` first, so a burst of commands for one phone is one push. Phones that are
//! not iPhones drop out when the store is asked where to push. Pushes go out at most
//! `push_rate_per_second` (a fan-out to every phone is spread out) with at most
//! `push_concurrency` in flight on the one HTTP/2 connection; a busy or unreachable APNs is
//! tried again with a doubling wait, a token APNs refuses for good is marked dead. Once a
//! minute the iPhones not heard from for `wake_silent_after_hours` are pushed too (once per
//! such period). The commands themselves stay in the queue whatever happens to a push: a push
//! only says "connect".

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::notify::apns::{Apns, Push, PushOutcome};
use crate::state::AppState;
use crate::store::apple::PushTarget;
use crate::store::StoreResult;

/// How often silent iPhones are looked for.
const SILENT_EVERY: Duration = Duration::from_secs(60);
/// How many silent iPhones one round wakes at most (the next round takes the rest).
const SILENT_PER_ROUND: i64 = 10_000;
/// How long APNs keeps a push for a phone it cannot reach.
const PUSH_KEPT_FOR: chrono::Duration = chrono::Duration::days(1);
/// How many phones are looked up at once before their pushes leave.
const LOOKUP_BY: usize = 500;
/// How many pushes APNs took are noted in the store at once.
const NOTE_PUSHED_BY: usize = 500;
/// The longest wait between tries of one push.
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(300);

pub struct Pusher {
    state: AppState,
    limiter: Arc<DefaultDirectRateLimiter>,
    in_flight: Arc<Semaphore>,
    /// The client of the push certificate it was built from (the PEM), rebuilt when the operator
    /// uploads another.
    client: Option<(String, Arc<Apns>)>,
    /// Phones whose pushes APNs took, not yet noted in the store (noted in batches: a fan-out
    /// would otherwise cost a write a push).
    delivered: Vec<i64>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

type Done = (PushTarget, PushOutcome);

impl Pusher {
    pub fn new(state: &AppState) -> Self {
        let apple = &state.config.apple;
        let rate = NonZeroU32::new(apple.push_rate_per_second).unwrap_or(NonZeroU32::MIN);
        Pusher {
            state: state.clone(),
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(rate))),
            in_flight: Arc::new(Semaphore::new(apple.push_concurrency.max(1))),
            client: None,
            delivered: Vec::new(),
        }
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let coalesce = Duration::from_millis(self.state.config.apple.push_coalesce_ms);
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut silent_check = tokio::time::interval(SILENT_EVERY);
        silent_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (mut silent, mut marked) = (false, false);
            let mut finished = Vec::new();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = self.state.command_board.marked() => marked = true,
                _ = silent_check.tick() => silent = true,
                Some(done) = tasks.join_next() => finished.extend(done),
            }
            if !finished.is_empty() {
                self.finish(finished, tasks.is_empty()).await;
                continue;
            }
            if marked {
                tokio::time::sleep(coalesce).await;
            }
            let mut devices = self.state.command_board.take_wakes();
            if silent {
                match self.silent_devices().await {
                    Ok(more) => devices.extend(more),
                    Err(e) => tracing::warn!(error = %e, "cannot look for silent iPhones"),
                }
            }
            if devices.is_empty() {
                continue;
            }
            if let Err(e) = self.dispatch(&devices, &mut tasks).await {
                tracing::warn!(error = %e, phones = devices.len(), "cannot push to iPhones");
            }
        }
        tasks.abort_all();
    }

    async fn silent_devices(&self) -> StoreResult<Vec<i64>> {
        let hours = i64::from(self.state.config.apple.wake_silent_after_hours);
        let since = self.state.clock.now() - chrono::Duration::hours(hours);
        self.state
            .store
            .silent_apple_devices(since, SILENT_PER_ROUND)
            .await
    }

    /// Starts a push for each of `devices` that can be woken, looking them up a chunk at a
    /// time so that the first pushes leave while the rest are read.
    async fn dispatch(&mut self, devices: &[i64], tasks: &mut JoinSet<Done>) -> StoreResult<()> {
        for chunk in devices.chunks(LOOKUP_BY) {
            let targets = self.state.store.push_targets(chunk).await?;
            if targets.is_empty() {
                continue;
            }
            let Some(apns) = self.client(targets.len()) else {
                continue;
            };
            let apple = &self.state.config.apple;
            let expires_at = (self.state.clock.now() + PUSH_KEPT_FOR).timestamp();
            let (attempts, first_wait) = (
                apple.push_attempts,
                Duration::from_millis(apple.push_retry_base_ms),
            );
            for target in targets {
                let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                    return Ok(());
                };
                self.limiter.until_ready().await;
                let apns = apns.clone();
                tasks.spawn(async move {
                    let outcome =
                        push_with_retries(&apns, &target, expires_at, attempts, first_wait).await;
                    drop(permit);
                    (target, outcome)
                });
                // Record what has finished meanwhile, so a long fan-out does not hold every
                // result.
                let finished = std::iter::from_fn(|| tasks.try_join_next())
                    .flatten()
                    .collect();
                self.finish(finished, false).await;
            }
        }
        Ok(())
    }

    /// The client of the operator's push certificate; `None` (counted, and logged) when there is
    /// none or it has run out: the commands wait in the queue for the phones' own connects.
    fn client(&mut self, pushes: usize) -> Option<Arc<Apns>> {
        let metrics = &self.state.metrics;
        let certificate = match self.state.ca.push_certificate() {
            Ok(Some(c)) => c,
            Ok(None) => {
                metrics.pushed("no_certificate", pushes as u64);
                tracing::warn!(pushes, "iPhones cannot be pushed: no MDM push certificate");
                return None;
            }
            Err(e) => {
                metrics.pushed("no_certificate", pushes as u64);
                tracing::error!(error = %e, "iPhones cannot be pushed: the MDM push certificate cannot be read");
                return None;
            }
        };
        let now = crate::flows::enrollment::to_offset(self.state.clock.now());
        if certificate.not_after <= now {
            metrics.pushed("certificate_expired", pushes as u64);
            tracing::error!(
                pushes,
                expired = %certificate.not_after.date(),
                "iPhones cannot be pushed: the MDM push certificate has run out; renew it at Apple's push certificates portal and upload it again"
            );
            return None;
        }
        let pem = format!("{}{}", certificate.certificate_pem, certificate.key_pem());
        if let Some((built_from, apns)) = &self.client {
            if *built_from == pem {
                return Some(apns.clone());
            }
        }
        match Apns::new(&self.state.config.apple, pem.as_bytes()) {
            Ok(apns) => {
                let apns = Arc::new(apns);
                self.client = Some((pem, apns.clone()));
                Some(apns)
            }
            Err(e) => {
                metrics.pushed("refused", pushes as u64);
                tracing::error!(error = %e, "iPhones cannot be pushed");
                None
            }
        }
    }

    /// Records finished pushes: when APNs took them (in batches of [`NOTE_PUSHED_BY`], and
    /// whatever waits once nothing is in flight), and tokens it refused for good.
    async fn finish(&mut self, finished: Vec<Done>, nothing_in_flight: bool) {
        let now = self.state.clock.now();
        let metrics = &self.state.metrics;
        for (target, outcome) in finished {
            match outcome {
                PushOutcome::Delivered => {
                    metrics.pushed("delivered", 1);
                    self.delivered.push(target.device_id);
                }
                PushOutcome::TokenDead(reason) => {
                    metrics.pushed("token_dead", 1);
                    tracing::info!(device = target.device_id, reason, "APNs refused the iPhone's push token: it cannot be woken until it sends a new one");
                    if let Err(e) = self
                        .state
                        .store
                        .mark_push_token_dead(target.device_id, &target.push_token, &reason, now)
                        .await
                    {
                        tracing::warn!(device = target.device_id, error = %e, "cannot mark a push token dead");
                    }
                }
                PushOutcome::Refused(reason) => {
                    metrics.pushed("refused", 1);
                    tracing::error!(device = target.device_id, reason, "APNs refused a push");
                }
                PushOutcome::Retry(reason) => {
                    metrics.pushed("gave_up", 1);
                    tracing::warn!(device = target.device_id, reason, "a push was given up after its tries; the phone collects its commands when it next connects");
                }
            }
        }
        let due = self.delivered.len() >= NOTE_PUSHED_BY
            || (nothing_in_flight && !self.delivered.is_empty());
        if due {
            // Written beside the pushes, not in their way.
            let delivered = std::mem::take(&mut self.delivered);
            let store = self.state.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.note_pushed(&delivered, now).await {
                    tracing::warn!(error = %e, "cannot note pushes");
                }
            });
        }
    }
}

/// One push, tried again with a doubling wait while APNs is busy or unreachable.
async fn push_with_retries(
    apns: &Apns,
    target: &PushTarget,
    expires_at: i64,
    attempts: u32,
    first_wait: Duration,
) -> PushOutcome {
    let push = Push {
        token: &target.push_token,
        magic: &target.push_magic,
        topic: &target.topic,
        expires_at,
    };
    let mut wait = first_wait;
    let mut attempt = 1;
    loop {
        match apns.send(push).await {
            PushOutcome::Retry(reason) if attempt < attempts => {
                tracing::debug!(
                    device = target.device_id,
                    attempt,
                    reason,
                    "push tried again"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST_RETRY_WAIT);
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}
