//! The notice scheduler and the outbox workers of a node: each round runs the notice flows
//! (`flows::notices`), reads the notice board again, and sends what the outbox holds.
//!
//! Everything they act on is a database row, so a restart loses nothing and several nodes can
//! run side by side:
//! - occurrences of recurring windows are created when their announcement is due (one node
//!   wins each occurrence; the others find it taken);
//! - due notices are expanded into outbox rows, one per recipient and channel (a notice is
//!   expanded once, whichever node gets there);
//! - outbox rows are claimed with a lease, sent, and marked sent or scheduled for a retry;
//!   after the last retry they are dead-lettered for the operator to see.
//!
//! A node that dies after handing a message over but before recording it leaves the row
//! leased; when the lease runs out another node sends it again. Every message carries its
//! idempotency key (the e-mail's Message-ID, an `Idempotency-Key` header) so that receivers
//! can drop the repeat; nothing else can make SMTP exactly-once.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use tokio::sync::watch;

use crate::domain::outbox::RetryPolicy;
use crate::flows::{self, FlowResult};
use crate::notify::Channels;
use crate::state::AppState;
use crate::store::notices::Delivery;
use crate::store::StoreResult;
/// Rounds of claiming per wake-up, so a large notice drains without waiting for the next tick.
const MAX_DELIVERY_ROUNDS: usize = 100;
/// How often a node deletes old messages.
const PRUNE_EVERY: Duration = Duration::hours(1);
/// How often each node reads the notice board again.
const BOARD_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

pub struct NoticeJobs {
    state: AppState,
    /// Names this node in leases and in the attempts it records.
    node: String,
    channels: Arc<Channels>,
    retry: RetryPolicy,
    /// When the notice board was last read from the database.
    board_read: std::sync::Mutex<Option<std::time::Instant>>,
    /// When (on the server's clock) old messages were last pruned.
    pruned_at: std::sync::Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for NoticeJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoticeJobs")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl NoticeJobs {
    pub fn new(state: &AppState, channels: Channels, node: String) -> Arc<Self> {
        let n = &state.config.notifications;
        Arc::new(NoticeJobs {
            state: state.clone(),
            node,
            channels: Arc::new(channels),
            retry: RetryPolicy {
                base: Duration::seconds(i64::try_from(n.retry_base_seconds).unwrap_or(30)),
                max: Duration::seconds(i64::try_from(n.retry_max_seconds).unwrap_or(3600)),
                max_attempts: n.max_attempts.max(1),
            },
            board_read: std::sync::Mutex::new(None),
            pruned_at: std::sync::Mutex::new(None),
        })
    }

    /// Works every poll interval, and at once when woken, until `stop` says so.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every = std::time::Duration::from_millis(
            self.state.config.notifications.poll_interval_ms.max(10),
        );
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.state.notice_wake.notified() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if let Err(e) = self.work_once().await {
                tracing::warn!(error = %e, "notice work failed; will retry");
            }
        }
    }

    /// One round: announce due occurrences, expand due notices, send due deliveries.
    pub async fn work_once(&self) -> FlowResult<()> {
        let policy = self.state.notice_policy().await?;
        flows::notices::announce_occurrences(&self.state, &policy).await?;
        flows::notices::expand_due(&self.state, &policy, self.channels.has_webhook()).await?;
        if self.board_due() {
            self.state
                .notice_board
                .refresh(self.state.store.as_ref(), self.state.clock.now())
                .await?;
        }
        for _ in 0..MAX_DELIVERY_ROUNDS {
            if self.deliver_due().await? == 0 {
                break;
            }
        }
        Ok(self.prune().await?)
    }

    /// Deletes old sent and dead-lettered messages, at most once an hour of the server's clock.
    async fn prune(&self) -> StoreResult<()> {
        let now = self.state.clock.now();
        {
            let mut last = self.pruned_at.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now - t < PRUNE_EVERY) {
                return Ok(());
            }
            *last = Some(now);
        }
        let keep = Duration::days(i64::from(self.state.config.notifications.retention_days));
        let pruned = self.state.store.prune_deliveries(now - keep, now).await?;
        if pruned > 0 {
            tracing::info!(pruned, "old notice messages deleted");
        }
        Ok(())
    }

    /// Whether to read the notice board again: changes made on this node refresh it at once,
    /// so this only picks up other nodes' changes and the passing of time.
    fn board_due(&self) -> bool {
        let mut last = self.board_read.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= BOARD_REFRESH);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
    }

    /// Sends due deliveries, `concurrency` at a time, until none are left; returns how many
    /// were claimed. Rows are claimed only when a slot is free for them, so each one's send
    /// starts as soon as it is leased and ends within the send timeout: the lease (twice the
    /// timeout and half a minute) outlives it, and no other node can take a row this one is
    /// still sending.
    async fn deliver_due(&self) -> StoreResult<usize> {
        let concurrency = self.state.config.notifications.concurrency.max(1);
        let lease = Duration::seconds(
            i64::try_from(self.state.config.notifications.send_timeout_seconds).unwrap_or(30) * 2
                + 30,
        );
        let mut sending = tokio::task::JoinSet::new();
        let mut claimed = 0;
        let mut drained = false;
        // Every outcome is recorded, even after one fails to be: a send that is not recorded
        // would go out again when its lease ends.
        let mut first_error = None;
        loop {
            // Refill when half the slots are free: fewer claims than one per message.
            if !drained && sending.len() <= concurrency / 2 {
                let now = self.state.clock.now();
                let want = (concurrency - sending.len()) as u32;
                match self
                    .state
                    .store
                    .claim_deliveries(&self.node, now, now + lease, want)
                    .await
                {
                    Ok(batch) => {
                        drained = batch.is_empty();
                        claimed += batch.len();
                        for delivery in batch {
                            let channels = self.channels.clone();
                            sending.spawn(async move {
                                let outcome = channels.send(&delivery).await;
                                (delivery, outcome)
                            });
                        }
                    }
                    Err(e) => {
                        drained = true;
                        first_error.get_or_insert(e);
                    }
                }
            }
            let Some(joined) = sending.join_next().await else {
                if drained {
                    break;
                }
                continue;
            };
            let Ok((delivery, outcome)) = joined else {
                continue;
            };
            if let Err(e) = self.record(&delivery, outcome).await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(claimed),
        }
    }

    async fn record(&self, delivery: &Delivery, outcome: Result<(), String>) -> StoreResult<()> {
        let now = self.state.clock.now();
        let retry_at = match &outcome {
            Ok(()) => None,
            Err(error) => {
                let attempts = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
                let retry_at = self.retry.retry_at(attempts, now);
                tracing::warn!(
                    delivery = delivery.id,
                    channel = delivery.channel.as_str(),
                    attempts,
                    dead = retry_at.is_none(),
                    %error,
                    "delivery failed"
                );
                retry_at
            }
        };
        self.state
            .store
            .finish_delivery(delivery.id, &self.node, outcome, retry_at, now)
            .await
    }
}

/// A name for this node: the host and a random part, so restarts are told apart.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string());
    format!("{host}-{:08x}", rand::random::<u32>())
}
