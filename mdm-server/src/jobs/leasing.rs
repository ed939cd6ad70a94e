//! Leasing work no person starts: when a provider's contract has ended, all its leases end and
//! its phones are queued for wipe; when a lost phone is not found in time, it is wiped; the
//! service desk is reminded of warranties ending within 60 days and leases within 30. Every
//! node may look; the store lets each change happen once, whichever node gets there.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use tokio::sync::watch;

use super::command_board::CommandBoard;
use super::{repeat, ClockGate};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::audit::AuditEvent;
use crate::domain::lease::LeaseEnd;
use crate::domain::maintenance::Channel;
use crate::domain::notice_text::{reminder, Reminder};
use crate::domain::role::Scope;
use crate::store::commands::CommandTemplate;
use crate::store::leasing::{LeaseEnding, LeaseFilter};
use crate::store::notices::NewDelivery;
use crate::store::{Store, StoreError, StoreResult};

/// How often (on the server's clock) a node looks.
const LOOK_EVERY: Duration = Duration::minutes(5);
/// How often a node reads its clock.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// Lost cases handled per look.
const BATCH: u32 = 200;
/// How often reminders are looked for.
const REMIND_EVERY: Duration = Duration::hours(6);
/// How far ahead the service desk is reminded of ending warranties and leases.
const WARRANTY_AHEAD: Duration = Duration::days(60);
const LEASE_AHEAD: Duration = Duration::days(30);
/// The most reminders of each kind per look.
const REMINDERS: u32 = 5000;

pub struct LeasingWatch {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Clock,
    board: CommandBoard,
    gate: ClockGate,
    reminders: ClockGate,
    operator_id: i64,
}

impl std::fmt::Debug for LeasingWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasingWatch")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

fn automatic(kind: &str, now: DateTime<Utc>) -> StoreResult<CommandTemplate> {
    CommandTemplate::automatic(kind, None, None, now, None)
        .map_err(|e| StoreError::Unsupported(e.to_string()))
}

impl LeasingWatch {
    pub fn new(state: &crate::http::AppState) -> Self {
        LeasingWatch {
            store: state.store.clone(),
            config: state.config.clone(),
            clock: state.clock.clone(),
            board: state.command_board.clone(),
            gate: ClockGate::new(LOOK_EVERY),
            reminders: ClockGate::new(REMIND_EVERY),
            operator_id: state.operator_id,
        }
    }

    pub async fn run(self, stop: watch::Receiver<bool>) {
        repeat(TICK, stop, "leasing watch", || async {
            let now = self.clock.now();
            if self.gate.due(now) {
                self.end_contracts(now).await?;
                self.escalate_lost(now).await?;
                self.gate.done(now);
            }
            if self.reminders.due(now) {
                self.remind(now).await?;
                self.reminders.done(now);
            }
            Ok(())
        })
        .await;
    }

    /// Ends the leases of every provider whose contract has ended; the phones are listed for
    /// return (awaiting wipe) and their wipes queued. The provider's accounts lost access when
    /// the contract ended (`ContractPeriod::is_active_on`).
    pub async fn end_contracts(&self, now: DateTime<Utc>) -> StoreResult<()> {
        let today = now.with_timezone(&self.config.time_zone).date_naive();
        for provider in self.store.providers_past_contract(today).await? {
            let ending = LeaseEnding {
                how: LeaseEnd::ContractEnded,
                wipe: automatic("wipe", now)?,
            };
            let mut event = AuditEvent::unattended("leasing", "lease.contract_end");
            event.org_id = Some(provider);
            event.target_kind = Some("provider".into());
            event.target_id = Some(provider.to_string());
            let devices = self
                .store
                .end_provider_leases(provider, &ending, now, event)
                .await?;
            tracing::info!(
                provider,
                phones = devices.len(),
                "contract ended: leases ended, wipes queued"
            );
            for device in devices {
                self.board.mark(device);
            }
        }
        Ok(())
    }

    /// Queues the wipe of every lost phone not found within the configured time.
    pub async fn escalate_lost(&self, now: DateTime<Utc>) -> StoreResult<()> {
        let Some(after) = self.config.leasing.lost_wipe_after() else {
            return Ok(());
        };
        loop {
            let due = self
                .store
                .lost_cases_to_escalate(now - after, BATCH)
                .await?;
            let done = due.len() < BATCH as usize;
            for case in due {
                let mut event = AuditEvent::unattended("leasing", "lost_case.escalate");
                event.org_id = case.provider_id;
                event.target_kind = Some("lost_case".into());
                if self
                    .store
                    .escalate_lost_case(case.id, &automatic("wipe", now)?, now, event)
                    .await?
                    .is_some()
                {
                    self.board.mark(case.device_id);
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Reminds the service desk, once each, of warranties ending within 60 days and leases
    /// ending within 30.
    pub async fn remind(&self, now: DateTime<Utc>) -> StoreResult<()> {
        let Some(to) = &self.config.leasing.service_desk_email else {
            return Ok(());
        };
        let today = now.with_timezone(&self.config.time_zone).date_naive();
        let language = super::notices::policy(self.store.as_ref(), self.operator_id)
            .await?
            .language;
        let message = |what, serial: &str, date, key: String| NewDelivery {
            channel: Channel::Email,
            recipient: to.clone(),
            provider_id: None,
            subject: reminder(what, serial, date, language).subject,
            body: reminder(what, serial, date, language).body,
            idempotency_key: key,
        };
        let mut items = Vec::new();
        for w in self
            .store
            .warranties_ending(today, today + WARRANTY_AHEAD, REMINDERS)
            .await?
        {
            let key = format!("reminder-warranty-{}-{}", w.device_id, w.warranty_end);
            items.push((
                w.device_id,
                message(Reminder::WarrantyEnds, &w.serial, w.warranty_end, key),
            ));
        }
        let leases = self
            .store
            .list_leases(
                Scope::Everything,
                &LeaseFilter {
                    ending_by: Some(today + LEASE_AHEAD),
                    limit: REMINDERS,
                    ..LeaseFilter::default()
                },
            )
            .await?;
        for l in leases {
            let Some(end) = l.ends_on else { continue };
            let key = format!("reminder-lease-{}-{end}", l.id);
            items.push((
                l.device_id,
                message(Reminder::LeaseEnds, &l.serial, end, key),
            ));
        }
        self.store.queue_reminders(&items, now).await
    }
}
