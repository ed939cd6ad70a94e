//! Background work of a server node.

pub mod checkin_times;
pub mod command_board;
pub mod commands;
pub mod compliance;
pub mod device_lookups;
pub mod leasing;
pub mod notice_board;
pub mod notices;
pub mod policy_board;

use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Mutex;
use tokio::sync::watch;

use crate::store::StoreResult;

/// Calls `work` every `every` until `stop` says so. A failure is logged, naming `what`, and
/// tried again at the next tick.
pub async fn repeat<F, Fut, T>(
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
    what: &str,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if let Err(e) = work().await {
            tracing::warn!(error = %e, "{what} failed; will retry");
        }
    }
}

/// Lets work through at most once per `every` of the server's clock, so that housekeeping
/// follows the clock tests move; a clock set back lets it through at once.
#[derive(Debug)]
pub struct ClockGate {
    every: chrono::Duration,
    last: Mutex<Option<DateTime<Utc>>>,
}

impl ClockGate {
    pub fn new(every: chrono::Duration) -> Self {
        ClockGate {
            every,
            last: Mutex::new(None),
        }
    }

    pub fn due(&self, now: DateTime<Utc>) -> bool {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        !last.is_some_and(|t| now - t < self.every && now >= t)
    }

    /// The work due at `now` is done.
    pub fn done(&self, now: DateTime<Utc>) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_opens_once_per_period_and_when_the_clock_goes_back() {
        let gate = ClockGate::new(chrono::Duration::minutes(10));
        let t: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().expect("time");
        assert!(gate.due(t));
        gate.done(t);
        assert!(!gate.due(t + chrono::Duration::minutes(9)));
        assert!(gate.due(t + chrono::Duration::minutes(10)));
        assert!(gate.due(t - chrono::Duration::minutes(1)));
    }
}
