//! Leasing work no person starts: when a provider's contract has ended, all its leases end and
//! its phones are queued for wipe; when a lost phone is not found in time, it is wiped. Every
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
use crate::store::commands::CommandTemplate;
use crate::store::leasing::LeaseEnding;
use crate::store::{Store, StoreError, StoreResult};

/// How often (on the server's clock) a node looks.
const LOOK_EVERY: Duration = Duration::minutes(5);
/// How often a node reads its clock.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// Lost cases handled per look.
const BATCH: u32 = 200;

pub struct LeasingWatch {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Clock,
    board: CommandBoard,
    gate: ClockGate,
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
}
