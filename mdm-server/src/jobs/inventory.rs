//! Looks every ten minutes (of the server's clock) for iPhones due to be asked for their
//! inventory again and has `flows::apple_connect` queue the question (which wakes them).

use chrono::Duration;
use tokio::sync::watch;

use super::{repeat, ClockGate};
use crate::state::AppState;

/// How often (on the server's clock) a node looks for iPhones due.
const LOOK_EVERY: Duration = Duration::minutes(10);
/// How often a node reads its clock.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug)]
pub struct InventoryWatch {
    state: AppState,
    gate: ClockGate,
}

impl InventoryWatch {
    pub fn new(state: &AppState) -> Self {
        InventoryWatch {
            state: state.clone(),
            gate: ClockGate::new(LOOK_EVERY),
        }
    }

    pub async fn run(self, stop: watch::Receiver<bool>) {
        repeat(TICK, stop, "iPhone inventory schedule", || async {
            let now = self.state.clock.now();
            if self.gate.due(now) {
                let asked =
                    crate::flows::apple_connect::refresh_due_inventories(&self.state, now).await?;
                if asked > 0 {
                    tracing::info!(iphones = asked, "iPhones asked for their inventory");
                }
                self.gate.done(now);
            }
            crate::flows::FlowResult::Ok(())
        })
        .await;
    }
}
