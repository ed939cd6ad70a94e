//! Time as the server sees it, and work repeated on it. Tests and benchmarks can set the clock;
//! production uses the system clock.

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Times are kept at microsecond precision, the finest both databases store, so that what is
/// read back equals what was written (the audit chain hashes the time).
pub fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// A clock that stands still unless moved; for tests.
    Fixed(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Clock::Fixed(Arc::new(Mutex::new(truncate(at))))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => truncate(Utc::now()),
            Clock::Fixed(at) => *at.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    pub fn advance(&self, by: chrono::Duration) {
        if let Clock::Fixed(at) = self {
            let mut t = at.lock().unwrap_or_else(|p| p.into_inner());
            *t += by;
        }
    }

    /// Today's date where the operator is.
    pub fn today(&self, tz: Tz) -> NaiveDate {
        self.now().with_timezone(&tz).date_naive()
    }
}

/// Calls `work` every `every` until `stop` says so. A failure is logged, naming `what`, and
/// tried again at the next tick.
pub async fn repeat<F, Fut, T, E>(
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
    what: &str,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
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
