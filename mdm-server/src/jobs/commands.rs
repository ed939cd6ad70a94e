//! Keeps the command queue from growing without bound: commands past their expiry are marked
//! expired (also for phones that never check in again), and finished commands older than the
//! retention period are deleted. Every node may sweep; the statements are idempotent.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::store::Store;

/// How often (on the server's clock) a node sweeps.
const SWEEP_EVERY: Duration = Duration::minutes(10);
/// How often a node looks at its clock.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct CommandSweeper {
    store: Arc<dyn Store>,
    clock: Clock,
    retention: Duration,
    swept_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for CommandSweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSweeper")
            .field("swept_at", &self.swept_at)
            .finish_non_exhaustive()
    }
}

impl CommandSweeper {
    pub fn new(store: Arc<dyn Store>, clock: Clock, retention_days: u32) -> Self {
        CommandSweeper {
            store,
            clock,
            retention: Duration::days(i64::from(retention_days)),
            swept_at: None,
        }
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let now = self.clock.now();
            if self
                .swept_at
                .is_some_and(|t| now - t < SWEEP_EVERY && now >= t)
            {
                continue;
            }
            match self.store.sweep_commands(now, now - self.retention).await {
                Ok((expired, deleted)) => {
                    self.swept_at = Some(now);
                    if expired + deleted > 0 {
                        tracing::info!(expired, deleted, "command queue swept");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "command sweep failed; will retry"),
            }
        }
    }
}
