//! Leasing work no person starts: when a provider's contract has ended, all its leases end and
//! its phones are queued for wipe; when a lost phone is not found in time, it is wiped; the
//! service desk is reminded of warranties ending within 60 days and leases within 30. Every
//! node may look; the store lets each change happen once, whichever node gets there. The work
//! itself is in `flows::leasing`, `flows::loss` and `flows::reminders`.

use chrono::Duration;
use tokio::sync::watch;

use super::{repeat, ClockGate};
use crate::flows;
use crate::state::AppState;

/// How often (on the server's clock) a node looks.
const LOOK_EVERY: Duration = Duration::minutes(5);
/// How often a node reads its clock.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// How often reminders are looked for.
const REMIND_EVERY: Duration = Duration::hours(6);

#[derive(Debug)]
pub struct LeasingWatch {
    state: AppState,
    gate: ClockGate,
    reminders: ClockGate,
}

impl LeasingWatch {
    pub fn new(state: &AppState) -> Self {
        LeasingWatch {
            state: state.clone(),
            gate: ClockGate::new(LOOK_EVERY),
            reminders: ClockGate::new(REMIND_EVERY),
        }
    }

    pub async fn run(self, stop: watch::Receiver<bool>) {
        repeat(TICK, stop, "leasing watch", || async {
            let state = &self.state;
            let now = state.clock.now();
            if self.gate.due(now) {
                flows::leasing::end_contracts(state, now).await?;
                flows::loss::escalate_overdue(state, now).await?;
                self.gate.done(now);
            }
            if self.reminders.due(now) {
                flows::reminders::remind(state, now).await?;
                self.reminders.done(now);
            }
            flows::FlowResult::Ok(())
        })
        .await;
    }
}
