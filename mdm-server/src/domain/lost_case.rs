//! Lost and stolen phones: the report, the 48-hour rule, escalation to a wipe, and the way a
//! case ends (found, or written off).

use chrono::{DateTime, Duration, Utc};

use super::device::DeviceStatus;
use super::{DomainError, Refusal};

/// A loss must be reported within this long of its discovery; later reports are flagged late.
pub const REPORT_WITHIN: Duration = Duration::hours(48);
/// Unless the operator says otherwise, a phone not found within this long is wiped.
pub const DEFAULT_ESCALATE_AFTER_HOURS: u32 = 24;
/// Free text (where and how it went missing) in characters.
pub const MAX_CIRCUMSTANCES_CHARS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    Lost,
    Stolen,
}

impl LossKind {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "lost" => Ok(LossKind::Lost),
            "stolen" => Ok(LossKind::Stolen),
            other => Err(DomainError::invalid(
                "kind",
                format!("'{other}' is neither lost nor stolen"),
            )),
        }
    }
}

/// What a provider reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossReport {
    pub kind: LossKind,
    pub discovered_at: DateTime<Utc>,
    /// Where and how the phone went missing.
    pub circumstances: String,
    /// The police report number, if one was filed (stolen phones usually have one).
    pub police_report: Option<String>,
}

impl LossReport {
    /// Checks the report as made at `now`.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), DomainError> {
        if self.discovered_at > now {
            return Err(DomainError::invalid(
                "discovered_at",
                "the loss cannot be discovered in the future",
            ));
        }
        let text = self.circumstances.trim();
        if text.is_empty() || text.chars().count() > MAX_CIRCUMSTANCES_CHARS {
            return Err(DomainError::invalid(
                "circumstances",
                format!("say where and how the phone went missing, in at most {MAX_CIRCUMSTANCES_CHARS} characters"),
            ));
        }
        if let Some(number) = &self.police_report {
            let ok = (4..=40).contains(&number.len())
                && number
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ' ' | '/'));
            if !ok {
                return Err(DomainError::invalid(
                    "police_report",
                    "a police report number is 4 to 40 letters, digits, hyphens or slashes",
                ));
            }
        }
        Ok(())
    }

    /// Reported more than 48 hours after the loss was discovered.
    pub fn is_late(&self, reported_at: DateTime<Utc>) -> bool {
        reported_at - self.discovered_at > REPORT_WITHIN
    }
}

/// Whether a phone in `status` can be reported lost: not when it is lost already (its case is
/// open) or retired.
/// The longest note on a case's timeline.
pub const MAX_NOTE_CHARS: usize = 2000;

/// A note for a case's timeline (a call to the police, the insurer's answer): its text, trimmed.
pub fn check_note(text: &str) -> Result<String, DomainError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DomainError::invalid("text", "write what happened"));
    }
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(DomainError::invalid(
            "text",
            format!("at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    Ok(text.to_string())
}

pub fn may_report(status: DeviceStatus) -> Result<(), Refusal> {
    match status {
        DeviceStatus::Lost => Err(Refusal::new(
            "lost-case-open",
            "the phone is reported lost already: add to its open case instead",
        )),
        DeviceStatus::Retired => Err(Refusal::new(
            "device-retired",
            "the phone is retired: there is nothing left to report",
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostState {
    Open,
    Found,
    WrittenOff,
}

/// How a case ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Found,
    WrittenOff,
}

/// Ends an open case; a closed case stays closed.
pub fn resolve(state: LostState, how: Resolution) -> Result<LostState, &'static str> {
    match state {
        LostState::Open => Ok(match how {
            Resolution::Found => LostState::Found,
            Resolution::WrittenOff => LostState::WrittenOff,
        }),
        LostState::Found | LostState::WrittenOff => {
            Err("the case is closed already; report the phone lost again if it is missing again")
        }
    }
}

/// Whether an open case is due its automatic wipe: not found within `escalate_after` of the
/// report, and no wipe queued yet. `None` means the operator has turned automatic wipes off.
pub fn escalation_due(
    state: LostState,
    reported_at: DateTime<Utc>,
    escalate_after: Option<Duration>,
    wipe_queued: bool,
    now: DateTime<Utc>,
) -> bool {
    state == LostState::Open
        && !wipe_queued
        && escalate_after.is_some_and(|after| now - reported_at >= after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn report() -> LossReport {
        LossReport {
            kind: LossKind::Stolen,
            discovered_at: at("2026-11-20T08:00:00Z"),
            circumstances: "Stulen ur bilen vid Storgatan".into(),
            police_report: Some("5000-K123456-26".into()),
        }
    }

    #[test]
    fn a_report_needs_its_circumstances_a_past_discovery_and_a_plausible_police_number() {
        let now = at("2026-11-21T08:00:00Z");
        assert!(report().check(now).is_ok());
        let mut future = report();
        future.discovered_at = at("2026-11-22T08:00:00Z");
        assert_eq!(
            future.check(now).expect_err("future").field(),
            "discovered_at"
        );
        let mut silent = report();
        silent.circumstances = "  ".into();
        assert_eq!(
            silent.check(now).expect_err("empty").field(),
            "circumstances"
        );
        let mut odd = report();
        odd.police_report = Some("<script>".into());
        assert_eq!(odd.check(now).expect_err("odd").field(), "police_report");
        assert!(LossKind::parse("misplaced").is_err());
    }

    #[test]
    fn a_report_more_than_48_hours_after_discovery_is_late() {
        let r = report();
        assert!(!r.is_late(at("2026-11-22T08:00:00Z")), "exactly 48 hours");
        assert!(r.is_late(at("2026-11-22T08:00:01Z")));
    }

    #[test]
    fn only_an_open_case_can_end_and_it_ends_once() {
        assert_eq!(
            resolve(LostState::Open, Resolution::Found),
            Ok(LostState::Found)
        );
        assert_eq!(
            resolve(LostState::Open, Resolution::WrittenOff),
            Ok(LostState::WrittenOff)
        );
        assert!(resolve(LostState::Found, Resolution::WrittenOff).is_err());
        assert!(resolve(LostState::WrittenOff, Resolution::Found).is_err());
    }

    #[test]
    fn a_phone_not_found_in_time_is_wiped_once_unless_the_operator_turned_it_off() {
        let reported = at("2026-11-20T10:00:00Z");
        let day = Some(Duration::hours(i64::from(DEFAULT_ESCALATE_AFTER_HOURS)));
        let later = |h| reported + Duration::hours(h);
        assert!(!escalation_due(
            LostState::Open,
            reported,
            day,
            false,
            later(23)
        ));
        assert!(escalation_due(
            LostState::Open,
            reported,
            day,
            false,
            later(24)
        ));
        assert!(!escalation_due(
            LostState::Open,
            reported,
            day,
            true,
            later(30)
        ));
        assert!(!escalation_due(
            LostState::Found,
            reported,
            day,
            false,
            later(30)
        ));
        assert!(!escalation_due(
            LostState::Open,
            reported,
            None,
            false,
            later(300)
        ));
    }

    #[test]
    fn a_lost_or_retired_phone_cannot_be_reported_again() {
        assert_eq!(may_report(DeviceStatus::Leased), Ok(()));
        assert_eq!(may_report(DeviceStatus::InStock), Ok(()));
        assert_eq!(
            may_report(DeviceStatus::Lost).expect_err("open").kind,
            "lost-case-open"
        );
        assert_eq!(
            may_report(DeviceStatus::Retired).expect_err("gone").kind,
            "device-retired"
        );
    }
}
