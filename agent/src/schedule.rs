//! When the agent talks to the server next: the server's interval with jitter, so that a
//! fleet does not check in in lock-step, and exponential backoff while the server cannot be
//! reached.

use std::time::Duration;

/// First retry after a failed check-in.
pub const BACKOFF_START: Duration = Duration::from_secs(5);
/// Never wait longer than this between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);
/// Renew the certificate when less than this part of its life is left.
pub const RENEW_WHEN_LEFT: f64 = 0.3;

/// The wait before the next check-in: the interval moved by up to ±10 %; `unit` is a random
/// number in [0, 1).
pub fn next_checkin(interval: Duration, unit: f64) -> Duration {
    let spread = interval.as_secs_f64() * 0.1;
    Duration::from_secs_f64(
        (interval.as_secs_f64() + spread * (2.0 * unit.clamp(0.0, 1.0) - 1.0)).max(1.0),
    )
}

/// The wait after `failures` failed attempts in a row (1 or more): doubling from
/// [`BACKOFF_START`] up to [`BACKOFF_MAX`], with up to 20 % taken off at random.
pub fn backoff(failures: u32, unit: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let base = BACKOFF_START
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX);
    base.mul_f64(1.0 - 0.2 * unit.clamp(0.0, 1.0))
}

/// Whether a certificate valid from `not_before` to `not_after` should be renewed at `now`
/// (all in seconds since the epoch).
pub fn should_renew(not_before: i64, not_after: i64, now: i64) -> bool {
    let life = (not_after - not_before).max(1) as f64;
    let left = (not_after - now) as f64;
    left / life < RENEW_WHEN_LEFT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let interval = Duration::from_secs(900);
        assert_eq!(next_checkin(interval, 0.5), interval);
        assert_eq!(next_checkin(interval, 0.0), Duration::from_secs(810));
        assert!(next_checkin(interval, 0.999) <= Duration::from_secs(990));
    }

    #[test]
    fn backoff_doubles_and_stops_at_the_maximum() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(2, 0.0), Duration::from_secs(10));
        assert_eq!(backoff(4, 0.0), Duration::from_secs(40));
        assert_eq!(backoff(30, 0.0), BACKOFF_MAX);
        assert!(backoff(30, 0.99) < BACKOFF_MAX);
    }

    #[test]
    fn renewal_starts_when_less_than_thirty_percent_is_left() {
        let year = 365 * 86400;
        assert!(!should_renew(0, year, year / 2));
        assert!(should_renew(0, year, year - year / 4));
        assert!(should_renew(0, year, year + 1));
    }
}
