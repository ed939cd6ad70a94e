//! Looks every ten minutes (of the server's clock) for phones non-compliant past the grace
//! period and has `flows::compliance` tell their providers.

use chrono::Duration;
use tokio::sync::watch;

use super::{repeat, ClockGate};
use crate::state::AppState;

/// How often (on the server's clock) a node looks for overdue phones.
const LOOK_EVERY: Duration = Duration::minutes(10);
/// How often a node reads its clock.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug)]
pub struct ComplianceWatch {
    state: AppState,
    gate: ClockGate,
}

impl ComplianceWatch {
    pub fn new(state: &AppState) -> Self {
        ComplianceWatch {
            state: state.clone(),
            gate: ClockGate::new(LOOK_EVERY),
        }
    }

    pub async fn run(self, stop: watch::Receiver<bool>) {
        repeat(TICK, stop, "compliance alerts", || async {
            let now = self.state.clock.now();
            if self.gate.due(now) {
                crate::flows::compliance::alert_overdue(&self.state, now).await?;
                self.gate.done(now);
            }
            crate::flows::FlowResult::Ok(())
        })
        .await;
    }
}
