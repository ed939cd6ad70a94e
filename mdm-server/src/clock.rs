//! Time as the server sees it. Tests and benchmarks can set the clock; production uses the
//! system clock.

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use std::sync::{Arc, Mutex};

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
