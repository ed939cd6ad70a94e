//! Wipe before reassign: a phone may get a new holder or a new provider only when the previous
//! holder's data is provably gone. Provably means, in this order after the previous assignment
//! ended: a wipe command was sent, the phone acknowledged it, and the phone then enrolled again
//! with a fresh identity. A phone new from the supplier has nothing to wipe. There is no
//! override; a phone that cannot be wiped remotely is marked wiped by two operator admins
//! (`WipeEvidence::marked_wiped`).

use chrono::{DateTime, Utc};

/// What the records say about a phone's wipes since it was last assigned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WipeEvidence {
    /// When the previous assignment (lease or holder) ended; `None` for a phone never assigned.
    pub assignment_ended_at: Option<DateTime<Utc>>,
    /// The last wipe command queued for the phone.
    pub wipe_sent_at: Option<DateTime<Utc>>,
    /// When the phone acknowledged that wipe.
    pub wipe_acknowledged_at: Option<DateTime<Utc>>,
    /// When the phone last enrolled.
    pub enrolled_at: Option<DateTime<Utc>>,
    /// When two operator admins recorded that the phone was wiped by hand (dead or broken).
    pub marked_wiped_at: Option<DateTime<Utc>>,
}

/// What is missing before the phone may change hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WipeMissing {
    /// Someone holds the phone now: their holding ends and the phone is wiped first.
    InUse,
    /// No wipe has been sent since the previous assignment ended.
    NotSent,
    /// A wipe was sent but the phone has not acknowledged it.
    NotAcknowledged,
    /// The phone was wiped but has not enrolled again with a fresh identity.
    NotReenrolled,
}

impl WipeMissing {
    /// The stable name the API shows.
    pub fn code(self) -> &'static str {
        match self {
            WipeMissing::InUse => "in_use",
            WipeMissing::NotSent => "not_sent",
            WipeMissing::NotAcknowledged => "not_acknowledged",
            WipeMissing::NotReenrolled => "not_reenrolled",
        }
    }

    /// The sentence the refusal carries: what must happen first.
    pub fn explain(self) -> &'static str {
        match self {
            WipeMissing::InUse => {
                "someone holds the phone now: their holding ends and the phone is wiped before anyone else gets it"
            }
            WipeMissing::NotSent => {
                "the phone has not been wiped since its last assignment ended: send it a wipe command"
            }
            WipeMissing::NotAcknowledged => {
                "the phone has been sent a wipe but has not confirmed it: wait for it to check in and confirm"
            }
            WipeMissing::NotReenrolled => {
                "the phone was wiped but has not enrolled again: enroll it with a new enrollment token"
            }
        }
    }
}

impl WipeEvidence {
    /// Whether the phone may be assigned anew; if not, the first thing missing.
    pub fn check(&self) -> Result<(), WipeMissing> {
        let Some(ended) = self.assignment_ended_at else {
            // New from the supplier: nobody's data is on it.
            return Ok(());
        };
        if self.marked_wiped_at.is_some_and(|t| t >= ended) {
            return Ok(());
        }
        let sent = self.wipe_sent_at.filter(|t| *t >= ended);
        let Some(sent) = sent else {
            return Err(WipeMissing::NotSent);
        };
        let acknowledged = self.wipe_acknowledged_at.filter(|t| *t >= sent);
        let Some(acknowledged) = acknowledged else {
            return Err(WipeMissing::NotAcknowledged);
        };
        match self.enrolled_at {
            Some(enrolled) if enrolled > acknowledged => Ok(()),
            _ => Err(WipeMissing::NotReenrolled),
        }
    }
}

/// Marking a phone wiped by hand needs two different operator admins: one records it with a
/// reason, another confirms.
pub fn check_manual_wipe(
    recorded_by: i64,
    reason: &str,
    confirmed_by: i64,
) -> Result<(), &'static str> {
    if reason.trim().chars().count() < 10 {
        return Err("say why the phone cannot be wiped remotely (at least 10 characters)");
    }
    if recorded_by == confirmed_by {
        return Err("a second operator admin must confirm; the one who recorded it cannot");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<DateTime<Utc>> {
        Some(s.parse().expect("time"))
    }

    fn ended() -> WipeEvidence {
        WipeEvidence {
            assignment_ended_at: at("2026-11-02T09:00:00Z"),
            enrolled_at: at("2026-01-10T09:00:00Z"),
            ..WipeEvidence::default()
        }
    }

    #[test]
    fn a_phone_new_from_the_supplier_may_be_assigned() {
        assert_eq!(WipeEvidence::default().check(), Ok(()));
    }

    #[test]
    fn each_missing_step_is_named_in_order() {
        let mut e = ended();
        assert_eq!(e.check(), Err(WipeMissing::NotSent));
        // A wipe from before the assignment ended does not count.
        e.wipe_sent_at = at("2026-10-01T09:00:00Z");
        e.wipe_acknowledged_at = at("2026-10-01T10:00:00Z");
        assert_eq!(e.check(), Err(WipeMissing::NotSent));
        e.wipe_sent_at = at("2026-11-02T10:00:00Z");
        assert_eq!(e.check(), Err(WipeMissing::NotAcknowledged));
        e.wipe_acknowledged_at = at("2026-11-02T11:00:00Z");
        assert_eq!(e.check(), Err(WipeMissing::NotReenrolled));
        // Enrolled before the wipe is the old identity.
        e.enrolled_at = at("2026-11-02T10:30:00Z");
        assert_eq!(e.check(), Err(WipeMissing::NotReenrolled));
        e.enrolled_at = at("2026-11-02T12:00:00Z");
        assert_eq!(e.check(), Ok(()));
    }

    #[test]
    fn a_phone_marked_wiped_after_its_assignment_ended_may_be_assigned() {
        let mut e = ended();
        e.marked_wiped_at = at("2026-11-01T09:00:00Z");
        assert_eq!(
            e.check(),
            Err(WipeMissing::NotSent),
            "marked before it ended"
        );
        e.marked_wiped_at = at("2026-11-03T09:00:00Z");
        assert_eq!(e.check(), Ok(()));
    }

    #[test]
    fn every_refusal_says_what_must_happen_first() {
        for missing in [
            WipeMissing::NotSent,
            WipeMissing::NotAcknowledged,
            WipeMissing::NotReenrolled,
        ] {
            assert!(missing.explain().contains(':'), "{missing:?}");
        }
    }

    #[test]
    fn marking_wiped_by_hand_needs_a_reason_and_a_second_admin() {
        assert!(check_manual_wipe(1, "Skärmen trasig, startar inte", 2).is_ok());
        assert!(check_manual_wipe(1, "trasig", 2).is_err());
        assert!(check_manual_wipe(1, "Skärmen trasig, startar inte", 1).is_err());
    }
}
