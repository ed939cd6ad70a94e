//! Keeps the command queue from growing without bound: commands past their expiry are marked
//! expired (also for phones that never check in again), and finished commands older than the
//! retention period are deleted. Certificates SCEP issued for an iPhone that never sent its
//! `Authenticate` go too. Every node may sweep; the statements are idempotent.

use chrono::Duration;
use std::sync::Arc;
use tokio::sync::watch;

use super::{repeat, ClockGate};
use crate::clock::Clock;
use crate::store::{Store, StoreResult};

/// How often (on the server's clock) a node sweeps.
const SWEEP_EVERY: Duration = Duration::minutes(10);
/// How often a node looks at its clock.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct CommandSweeper {
    store: Arc<dyn Store>,
    clock: Clock,
    retention: Duration,
    gate: ClockGate,
}

impl std::fmt::Debug for CommandSweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSweeper")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl CommandSweeper {
    pub fn new(store: Arc<dyn Store>, clock: Clock, retention_days: u32) -> Self {
        CommandSweeper {
            store,
            clock,
            retention: Duration::days(i64::from(retention_days)),
            gate: ClockGate::new(SWEEP_EVERY),
        }
    }

    pub async fn run(self, stop: watch::Receiver<bool>) {
        repeat(LOOK_EVERY, stop, "the command sweep", || self.sweep()).await;
    }

    async fn sweep(&self) -> StoreResult<()> {
        let now = self.clock.now();
        if !self.gate.due(now) {
            return Ok(());
        }
        let (expired, deleted) = self.store.sweep_commands(now, now - self.retention).await?;
        let abandoned = self
            .store
            .sweep_pending_enrollments(now - crate::flows::apple::PENDING_FOR)
            .await?;
        self.gate.done(now);
        if expired + deleted > 0 {
            tracing::info!(expired, deleted, "command queue swept");
        }
        if abandoned > 0 {
            tracing::info!(abandoned, "iPhone enrollments never completed were dropped");
        }
        Ok(())
    }
}
