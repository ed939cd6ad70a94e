//! Rules of delivering notifications: when to try again, when to give up, what counts as late.

use chrono::{DateTime, Duration, Utc};

/// What an outbox message is about. The database keeps the name; the list lives here, so a new
/// kind of message needs no table change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// A maintenance or disruption notice.
    Notice,
    /// A phone that has broken the policy for longer than the grace period.
    Compliance,
    /// A phone reported lost or stolen, for the operator's service desk.
    LostCase,
    /// A SIM that has used 80 % or all of its monthly data.
    DataUse,
    /// A warranty or lease ending soon, for the service desk.
    Reminder,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Notice => "notice",
            Topic::Compliance => "compliance",
            Topic::LostCase => "lost_case",
            Topic::DataUse => "data_use",
            Topic::Reminder => "reminder",
        }
    }
}

/// How failed deliveries are retried: exponential backoff from `base`, at most `max` apart,
/// giving up after `max_attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// When to try again after `attempts` failed attempts, or `None` to give up (dead-letter).
    pub fn retry_at(&self, attempts: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if attempts >= self.max_attempts {
            return None;
        }
        let factor = 1i32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(i32::MAX);
        let delay = self
            .base
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max));
        Some(now + delay)
    }
}

/// A scheduled send that goes out this much after it was due is marked late (the server was
/// down or overloaded), so the operator can see it.
pub const LATE_AFTER: Duration = Duration::minutes(2);

pub fn is_late(due_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - due_at > LATE_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_and_then_give_up() {
        let policy = RetryPolicy {
            base: Duration::seconds(30),
            max: Duration::minutes(10),
            max_attempts: 6,
        };
        let now: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().expect("t");
        let delays: Vec<i64> = (1..6)
            .map(|n| (policy.retry_at(n, now).expect("retry") - now).num_seconds())
            .collect();
        assert_eq!(delays, [30, 60, 120, 240, 480]);
        assert_eq!(policy.retry_at(6, now), None);
        let long = RetryPolicy {
            max_attempts: 100,
            ..policy
        };
        assert_eq!(
            long.retry_at(60, now).map(|t| t - now),
            Some(Duration::minutes(10))
        );
    }

    #[test]
    fn a_send_two_minutes_after_its_time_is_late() {
        let due: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().expect("t");
        assert!(!is_late(due, due + Duration::minutes(2)));
        assert!(is_late(
            due,
            due + Duration::minutes(2) + Duration::seconds(1)
        ));
    }
}
