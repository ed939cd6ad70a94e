//! Account rules: password strength, login throttling and lockout, session lifetimes.

use chrono::{DateTime, Duration, Utc};

use super::DomainError;

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// The minimum strength rule: at least 12 characters and a zxcvbn score of 3 ("safely
/// unguessable") with the person's own e-mail and name counted as guessable words.
pub fn check_password_strength(password: &str, personal_words: &[&str]) -> Result<(), DomainError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(DomainError::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(DomainError::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let estimate = zxcvbn::zxcvbn(password, personal_words);
    if (estimate.score() as u8) < 3 {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning().map(|w| w.to_string()))
            .unwrap_or_else(|| "add more unrelated words".to_string());
        return Err(DomainError::invalid(
            "password",
            format!("is too easy to guess ({hint})"),
        ));
    }
    Ok(())
}

/// How repeated login failures slow down and then lock an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottle {
    /// Failures in a row after which the account is locked.
    pub max_failures: u32,
    /// How long a lock lasts.
    pub lockout: Duration,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            max_failures: 5,
            lockout: Duration::minutes(15),
        }
    }
}

/// What happens after one more failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    pub failures: u32,
    /// Set when this failure locks the account.
    pub locked_until: Option<DateTime<Utc>>,
    /// How long to hold the answer back, growing with each failure.
    pub delay: std::time::Duration,
}

impl LoginThrottle {
    pub fn is_locked(&self, locked_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        locked_until.is_some_and(|until| until > now)
    }

    /// `failures_before` is the count of failures in a row before this one. After a lock has
    /// run out the count starts again, so a locked-out person gets a fresh set of tries.
    pub fn after_failure(&self, failures_before: u32, now: DateTime<Utc>) -> FailureOutcome {
        let failures = failures_before.saturating_add(1);
        let locked_until = (failures >= self.max_failures).then(|| now + self.lockout);
        let delay = std::time::Duration::from_millis(200 * u64::from(failures.min(10)));
        FailureOutcome {
            failures: if locked_until.is_some() { 0 } else { failures },
            locked_until,
            delay,
        }
    }
}

/// How long sessions and API tokens live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub session_lifetime: Duration,
    pub max_token_lifetime: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            session_lifetime: Duration::hours(8),
            max_token_lifetime: Duration::days(365),
        }
    }
}

impl SessionPolicy {
    pub fn token_expiry(
        &self,
        now: DateTime<Utc>,
        days: Option<u32>,
    ) -> Result<DateTime<Utc>, DomainError> {
        let days = days.unwrap_or(90);
        let lifetime = Duration::days(i64::from(days));
        if days == 0 || lifetime > self.max_token_lifetime {
            return Err(DomainError::invalid(
                "expires_in_days",
                format!(
                    "must be between 1 and {}",
                    self.max_token_lifetime.num_days()
                ),
            ));
        }
        Ok(now + lifetime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-23T08:00:00Z".parse().expect("time")
    }

    #[test]
    fn short_and_guessable_passwords_are_refused() {
        assert!(check_password_strength("short", &[]).is_err());
        assert!(check_password_strength("password1234", &[]).is_err());
        assert!(check_password_strength("anna.berg@omsorg.se1", &["anna.berg@omsorg.se"]).is_err());
        assert!(check_password_strength(&"x".repeat(129), &[]).is_err());
    }

    #[test]
    fn a_long_unrelated_passphrase_is_accepted() {
        assert!(check_password_strength("tranbär-cykelställ-vinterväg-97", &[]).is_ok());
    }

    #[test]
    fn failures_slow_down_then_lock_for_the_lockout_period() {
        let throttle = LoginThrottle::default();
        let first = throttle.after_failure(0, now());
        assert_eq!(first.failures, 1);
        assert!(first.locked_until.is_none());
        let fourth = throttle.after_failure(3, now());
        assert!(fourth.delay > first.delay);
        let fifth = throttle.after_failure(4, now());
        let until = fifth.locked_until.expect("locked");
        assert_eq!(until, now() + Duration::minutes(15));
        assert!(throttle.is_locked(Some(until), now() + Duration::minutes(14)));
        assert!(!throttle.is_locked(Some(until), now() + Duration::minutes(15)));
        assert_eq!(fifth.failures, 0, "a new set of tries after the lock");
    }

    #[test]
    fn token_lifetime_is_bounded() {
        let policy = SessionPolicy::default();
        assert_eq!(
            policy.token_expiry(now(), None).expect("ok"),
            now() + Duration::days(90)
        );
        assert!(policy.token_expiry(now(), Some(0)).is_err());
        assert!(policy.token_expiry(now(), Some(366)).is_err());
    }
}
