//! The notice scheduler and the outbox workers of a node.
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
use tokio::sync::{watch, Notify};

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::maintenance::{
    timetable, Channel, NoticeKind, NoticePolicy, Recurrence, WindowKind,
};
use crate::domain::notice_text::{self, NoticeSubject};
use crate::domain::outbox::{is_late, RetryPolicy};
use crate::notify::Channels;
use crate::store::notices::{Delivery, NewDelivery, NewNotice, NewWindow, Notice, Series, Window};
use crate::store::{Organisation, Store, StoreResult};

/// Notices expanded per round.
const EXPAND_BATCH: u32 = 50;
/// Rounds of claiming per wake-up, so a large notice drains without waiting for the next tick.
const MAX_DELIVERY_ROUNDS: usize = 100;
/// How often a node deletes old messages.
const PRUNE_EVERY: Duration = Duration::hours(1);
/// How often each node reads the notice board again.
const BOARD_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

pub struct NoticeJobs {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Clock,
    operator_id: i64,
    /// Names this node in leases and in the attempts it records.
    node: String,
    channels: Arc<Channels>,
    retry: RetryPolicy,
    wake: Arc<Notify>,
    board: crate::state::notice_board::NoticeBoard,
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
    pub fn new(state: &crate::state::AppState, channels: Channels, node: String) -> Arc<Self> {
        let n = &state.config.notifications;
        Arc::new(NoticeJobs {
            store: state.store.clone(),
            config: state.config.clone(),
            clock: state.clock.clone(),
            operator_id: state.operator_id,
            node,
            channels: Arc::new(channels),
            retry: RetryPolicy {
                base: Duration::seconds(i64::try_from(n.retry_base_seconds).unwrap_or(30)),
                max: Duration::seconds(i64::try_from(n.retry_max_seconds).unwrap_or(3600)),
                max_attempts: n.max_attempts.max(1),
            },
            wake: state.notice_wake.clone(),
            board: state.notice_board.clone(),
            board_read: std::sync::Mutex::new(None),
            pruned_at: std::sync::Mutex::new(None),
        })
    }

    /// Works every poll interval, and at once when woken, until `stop` says so.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every =
            std::time::Duration::from_millis(self.config.notifications.poll_interval_ms.max(10));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if let Err(e) = self.work_once().await {
                tracing::warn!(error = %e, "notice work failed; will retry");
            }
        }
    }

    /// One round: announce due occurrences, expand due notices, send due deliveries.
    pub async fn work_once(&self) -> StoreResult<()> {
        let policy = crate::state::notice_policy(self.store.as_ref(), self.operator_id).await?;
        self.announce_occurrences(&policy).await?;
        self.expand_due(&policy).await?;
        if self.board_due() {
            self.board
                .refresh(self.store.as_ref(), self.clock.now())
                .await?;
        }
        for _ in 0..MAX_DELIVERY_ROUNDS {
            if self.deliver_due().await? == 0 {
                break;
            }
        }
        self.prune().await
    }

    /// Deletes old sent and dead-lettered messages, at most once an hour of the server's clock.
    async fn prune(&self) -> StoreResult<()> {
        let now = self.clock.now();
        {
            let mut last = self.pruned_at.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now - t < PRUNE_EVERY) {
                return Ok(());
            }
            *last = Some(now);
        }
        let keep = Duration::days(i64::from(self.config.notifications.retention_days));
        let pruned = self.store.prune_deliveries(now - keep, now).await?;
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

    /// Creates the occurrences of recurring windows whose announcement is due.
    async fn announce_occurrences(&self, policy: &NoticePolicy) -> StoreResult<()> {
        let tz = self.config.time_zone;
        let now = self.clock.now();
        let until = policy.earliest_start(tz, now);
        for series in self.store.due_series(until).await? {
            if let Err(e) = self.announce_occurrence(policy, tz, &series, now).await {
                tracing::warn!(series = series.id, error = %e, "could not announce an occurrence");
            }
        }
        Ok(())
    }

    async fn announce_occurrence(
        &self,
        policy: &NoticePolicy,
        tz: chrono_tz::Tz,
        series: &Series,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let Some(next) = series.next_start_at else {
            return Ok(());
        };
        let recurrence = Recurrence::parse(&series.cron, series.duration_minutes)?;
        let (start, end) = recurrence
            .next_after(tz, next)
            .ok_or_else(|| anyhow::anyhow!("the expression no longer fires"))?;
        let following = recurrence
            .next_after(tz, start + Duration::seconds(1))
            .map(|(s, _)| s);
        // Announced when it was due (`start` less the lead time); after downtime that lies in
        // the past and the notice goes out at once, marked late.
        let announce_at = policy.announce_at(tz, start);
        let mut notices = vec![NewNotice::at(NoticeKind::Announced, announce_at)];
        notices.extend(
            timetable(policy, announce_at, start, end)
                .into_iter()
                .map(|(kind, at)| NewNotice::at(kind, at)),
        );
        let window = NewWindow {
            kind: WindowKind::Planned,
            series_id: Some(series.id),
            text: series.text.clone(),
            targets: series.targets.clone(),
            starts_at: start,
            ends_at: Some(end),
            outside_preferred: series.outside_preferred,
            created_by: None,
        };
        // An occurrence that ended while every node was down is passed over.
        let window = Some(&window).filter(|_| end > now);
        self.store
            .materialise_occurrence(series.id, next, window, &notices, following, now)
            .await?;
        Ok(())
    }

    async fn expand_due(&self, policy: &NoticePolicy) -> StoreResult<()> {
        let now = self.clock.now();
        let due = self.store.due_notices(now, EXPAND_BATCH).await?;
        if due.is_empty() {
            return Ok(());
        }
        let providers = self.store.list_providers().await?;
        for notice in &due {
            let window = self.store.window(notice.window_id).await?;
            let deliveries = self.deliveries_for(policy, notice, &window, &providers);
            let then = follow_up(policy, notice, &window, now);
            self.store
                .expand_notice(
                    notice.id,
                    &deliveries,
                    &then,
                    is_late(notice.due_at, now),
                    now,
                )
                .await?;
        }
        Ok(())
    }

    /// One outbox row per IT contact and channel of every provider the window concerns (whose
    /// contract is in force), and one for the webhook.
    fn deliveries_for(
        &self,
        policy: &NoticePolicy,
        notice: &Notice,
        window: &Window,
        providers: &[Organisation],
    ) -> Vec<NewDelivery> {
        let tz = self.config.time_zone;
        let today = self.clock.today(tz);
        let subject = NoticeSubject {
            operator_name: &self.config.operator_name,
            kind: window.kind,
            title: &window.text.title,
            description: &window.text.description,
            systems: &window.text.systems,
            starts_at: window.starts_at,
            ends_at: window.ends_at,
            message: notice.message.as_deref(),
        };
        let text = notice_text::render(notice.kind, &subject, tz, policy.language);
        let channels = policy.channels_for(window.kind);
        let mut out = Vec::new();
        for provider in providers.iter().filter(|p| {
            window.targets.includes(p.id) && p.contract.is_some_and(|c| c.is_active_on(today))
        }) {
            for contact in &provider.it_contacts {
                for &channel in &channels {
                    let (recipient, subject, body) = match channel {
                        Channel::Email => (
                            contact.email.as_str(),
                            text.subject.clone(),
                            text.body.clone(),
                        ),
                        Channel::Sms => (contact.mobile.as_str(), String::new(), text.sms.clone()),
                        Channel::Webhook => continue,
                    };
                    out.push(NewDelivery {
                        channel,
                        recipient: recipient.to_string(),
                        provider_id: Some(provider.id),
                        subject,
                        body,
                        idempotency_key: idempotency_key(notice.id, channel, recipient),
                    });
                }
            }
        }
        if channels.contains(&Channel::Webhook) && self.channels.has_webhook() {
            let recipient = crate::notify::webhook::RECIPIENT;
            let body = serde_json::json!({
                "notice_id": notice.id,
                "notice": notice.kind,
                "window": {
                    "id": window.id,
                    "kind": window.kind,
                    "title": window.text.title,
                    "systems": window.text.systems,
                    "starts_at": window.starts_at,
                    "ends_at": window.ends_at,
                },
                "subject": text.subject,
                "text": text.body,
            });
            out.push(NewDelivery {
                channel: Channel::Webhook,
                recipient: recipient.to_string(),
                provider_id: None,
                subject: text.subject.clone(),
                body: body.to_string(),
                idempotency_key: idempotency_key(notice.id, Channel::Webhook, recipient),
            });
        }
        out
    }

    /// Sends due deliveries, `concurrency` at a time, until none are left; returns how many
    /// were claimed. Rows are claimed only when a slot is free for them, so each one's send
    /// starts as soon as it is leased and ends within the send timeout: the lease (twice the
    /// timeout and half a minute) outlives it, and no other node can take a row this one is
    /// still sending.
    async fn deliver_due(&self) -> StoreResult<usize> {
        let concurrency = self.config.notifications.concurrency.max(1);
        let lease = Duration::seconds(
            i64::try_from(self.config.notifications.send_timeout_seconds).unwrap_or(30) * 2 + 30,
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
                let now = self.clock.now();
                let want = (concurrency - sending.len()) as u32;
                match self
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
        let now = self.clock.now();
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
        self.store
            .finish_delivery(delivery.id, &self.node, outcome, retry_at, now)
            .await
    }
}

/// The next follow-up of an open disruption, when this notice is one.
fn follow_up(
    policy: &NoticePolicy,
    notice: &Notice,
    window: &Window,
    now: DateTime<Utc>,
) -> Vec<NewNotice> {
    if notice.kind != NoticeKind::DisruptionFollowUp || window.closed_at.is_some() {
        return Vec::new();
    }
    let every = Duration::minutes(i64::from(policy.disruption_follow_up_minutes));
    // After downtime the next one is counted from now, not from the missed one.
    let next = (notice.due_at + every).max(now + every);
    vec![NewNotice::at(NoticeKind::DisruptionFollowUp, next)]
}

/// Unique per notice, channel and recipient; short enough for a Message-ID.
fn idempotency_key(notice_id: i64, channel: Channel, recipient: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(recipient.as_bytes());
    format!(
        "notice-{notice_id}-{}-{}",
        channel.as_str(),
        hex::encode(&digest[..8])
    )
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
