//! Warranty cases: a fault recorded against a phone, which moves opened → sent to supplier →
//! repaired | replaced | rejected → closed. A phone leaves for the supplier only wiped.

use chrono::NaiveDate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarrantyState {
    Opened,
    SentToSupplier,
    Repaired,
    Replaced,
    Rejected,
    Closed,
}

pub const ALL_STATES: [WarrantyState; 6] = [
    WarrantyState::Opened,
    WarrantyState::SentToSupplier,
    WarrantyState::Repaired,
    WarrantyState::Replaced,
    WarrantyState::Rejected,
    WarrantyState::Closed,
];

impl WarrantyState {
    pub fn as_str(self) -> &'static str {
        match self {
            WarrantyState::Opened => "opened",
            WarrantyState::SentToSupplier => "sent_to_supplier",
            WarrantyState::Repaired => "repaired",
            WarrantyState::Replaced => "replaced",
            WarrantyState::Rejected => "rejected",
            WarrantyState::Closed => "closed",
        }
    }
}

/// Whether the phone is under warranty on `today` (through its last day).
pub fn in_warranty(warranty_end: Option<NaiveDate>, today: NaiveDate) -> bool {
    warranty_end.is_some_and(|end| today <= end)
}

/// Moves a case; `wiped` says whether the phone has passed the wipe gate
/// (`wipe_gate::WipeEvidence::check`). A refusal says what must happen first.
pub fn transition(
    from: WarrantyState,
    to: WarrantyState,
    wiped: bool,
) -> Result<WarrantyState, &'static str> {
    use WarrantyState::*;
    match (from, to) {
        (Opened, SentToSupplier) if !wiped => {
            Err("the phone must be wiped before it leaves for the supplier")
        }
        (Opened, SentToSupplier)
        | (SentToSupplier, Repaired | Replaced | Rejected)
        | (Repaired | Replaced | Rejected, Closed)
        // A fault that turns out to be none is closed without sending the phone anywhere.
        | (Opened, Closed) => Ok(to),
        (Closed, _) => Err("the case is closed; open a new one for a new fault"),
        (Opened, _) => Err("the phone must be sent to the supplier first"),
        (SentToSupplier, _) => {
            Err("the supplier's answer comes first: repaired, replaced or rejected")
        }
        (Repaired | Replaced | Rejected, _) => Err("the supplier has answered; close the case"),
    }
}

#[cfg(test)]
mod tests {
    use super::WarrantyState::*;
    use super::*;

    #[test]
    fn the_allowed_path_runs_from_opened_to_closed() {
        for answer in [Repaired, Replaced, Rejected] {
            assert_eq!(transition(Opened, SentToSupplier, true), Ok(SentToSupplier));
            assert_eq!(transition(SentToSupplier, answer, true), Ok(answer));
            assert_eq!(transition(answer, Closed, true), Ok(Closed));
        }
        assert_eq!(transition(Opened, Closed, false), Ok(Closed));
    }

    #[test]
    fn every_other_move_is_refused_with_what_comes_first() {
        let allowed = |from, to| {
            matches!(
                (from, to),
                (Opened, SentToSupplier)
                    | (SentToSupplier, Repaired | Replaced | Rejected)
                    | (Repaired | Replaced | Rejected, Closed)
                    | (Opened, Closed)
            )
        };
        for from in ALL_STATES {
            for to in ALL_STATES {
                let result = transition(from, to, true);
                assert_eq!(result.is_ok(), allowed(from, to), "{from:?} → {to:?}");
                if let Err(why) = result {
                    assert!(!why.is_empty());
                }
            }
        }
    }

    #[test]
    fn an_unwiped_phone_does_not_leave_for_the_supplier() {
        assert!(transition(Opened, SentToSupplier, false).is_err());
    }

    #[test]
    fn the_warranty_holds_through_its_last_day() {
        let d = |s: &str| s.parse::<NaiveDate>().expect("date");
        assert!(in_warranty(Some(d("2026-11-23")), d("2026-11-23")));
        assert!(!in_warranty(Some(d("2026-11-22")), d("2026-11-23")));
        assert!(!in_warranty(None, d("2026-11-23")));
    }
}
