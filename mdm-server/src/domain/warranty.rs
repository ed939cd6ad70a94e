//! Warranty cases: a fault recorded against a phone, which moves opened → sent to supplier →
//! repaired | replaced | rejected → closed. A phone leaves for the supplier only wiped.

use chrono::{DateTime, NaiveDate, Utc};

use super::device::DeviceStatus;
use super::{DomainError, Refusal};

/// The longest fault description, in characters.
pub const MAX_FAULT_CHARS: usize = 2000;

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

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        ALL_STATES.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            DomainError::invalid(
                "state",
                format!("'{s}' is not a warranty case state; expected sent_to_supplier, repaired, replaced, rejected or closed"),
            )
        })
    }
}

/// Whether a case may be opened for a phone in `status`, with this fault description.
pub fn may_open(status: DeviceStatus, fault: &str) -> Result<(), DomainError> {
    let fault = fault.trim();
    if fault.is_empty() || fault.chars().count() > MAX_FAULT_CHARS {
        return Err(DomainError::invalid(
            "fault",
            format!("describe the fault in at most {MAX_FAULT_CHARS} characters"),
        ));
    }
    match status {
        DeviceStatus::Retired => Err(DomainError::invalid(
            "device_id",
            "the phone is retired: there is no warranty case to open",
        )),
        DeviceStatus::Lost => Err(DomainError::invalid(
            "device_id",
            "the phone is reported lost: its lost case comes first",
        )),
        _ => Ok(()),
    }
}

/// Whether the phone has been wiped (confirmed by the phone, or by two operator admins) since
/// the case was opened: what it takes to leave for the supplier.
pub fn wiped_since(
    opened_at: DateTime<Utc>,
    wiped_at: Option<DateTime<Utc>>,
    marked_wiped_at: Option<DateTime<Utc>>,
) -> bool {
    wiped_at.is_some_and(|t| t >= opened_at) || marked_wiped_at.is_some_and(|t| t >= opened_at)
}

/// What the phone's records say when a case moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhoneNow {
    /// Wiped since the case was opened (see [`wiped_since`]).
    pub wiped: bool,
    pub lease_open: bool,
    pub lost: bool,
}

/// A move of a case as a refusal the API can answer with. Besides the order of the states: a
/// phone reported lost waits for its lost case, and a phone the supplier replaced retires, so
/// its lease must have moved to a replacement (swap) or ended first.
pub fn check_transition(
    from: WarrantyState,
    to: WarrantyState,
    phone: PhoneNow,
) -> Result<WarrantyState, Refusal> {
    if phone.lost && to != WarrantyState::Closed {
        return Err(Refusal::new(
            "device-lost",
            "the phone is reported lost: its lost case must end first",
        ));
    }
    let to = transition(from, to, phone.wiped).map_err(|why| {
        let kind = if from == WarrantyState::Opened && to == WarrantyState::SentToSupplier {
            "wipe-required"
        } else {
            "warranty-transition"
        };
        Refusal::new(kind, why)
    })?;
    if to == WarrantyState::Replaced && phone.lease_open {
        return Err(Refusal::new(
            "lease-open",
            "the phone still has a lease: swap in a replacement or return it before it is retired",
        ));
    }
    Ok(to)
}

/// The phone's status after the case reaches `state`, if it changes: it is in repair while at
/// the supplier, comes back when repaired or rejected (to its lease if it still has one), and
/// is retired when the supplier replaced it.
pub fn status_after(state: WarrantyState, lease_open: bool) -> Option<DeviceStatus> {
    let back = if lease_open {
        DeviceStatus::Leased
    } else {
        DeviceStatus::InStock
    };
    match state {
        WarrantyState::SentToSupplier => Some(DeviceStatus::InRepair),
        WarrantyState::Repaired | WarrantyState::Rejected => Some(back),
        WarrantyState::Replaced => Some(DeviceStatus::Retired),
        WarrantyState::Opened | WarrantyState::Closed => None,
    }
}

/// Whether a replacement phone may take over the faulty phone's lease and holder: the case
/// is not closed, the faulty phone has a lease, and the replacement is in stock, enrolled and
/// compliant.
pub fn may_swap(
    state: WarrantyState,
    faulty_leased: bool,
    replacement: DeviceStatus,
    replacement_enrolled: bool,
    replacement_compliant: bool,
) -> Result<(), Refusal> {
    let refuse = |kind, why: &str| Err(Refusal::new(kind, why));
    if state == WarrantyState::Closed {
        return refuse(
            "warranty-transition",
            "the case is closed; open a new one for a new fault",
        );
    }
    if !faulty_leased {
        return refuse(
            "not-leased",
            "the faulty phone has no lease for a replacement to take over",
        );
    }
    if replacement != DeviceStatus::InStock {
        return refuse(
            "replacement-unavailable",
            "the replacement must be a phone in stock",
        );
    }
    if !replacement_enrolled {
        return refuse(
            "replacement-not-enrolled",
            "the replacement must be enrolled first: give it an enrollment token",
        );
    }
    if !replacement_compliant {
        return refuse(
            "replacement-not-compliant",
            "the replacement must meet the policy first: see its compliance view",
        );
    }
    Ok(())
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

    #[test]
    fn cases_open_on_phones_in_use_with_a_described_fault() {
        assert!(may_open(DeviceStatus::Leased, "Laddar inte").is_ok());
        assert_eq!(
            may_open(DeviceStatus::Retired, "Laddar inte")
                .expect_err("retired")
                .field(),
            "device_id"
        );
        assert_eq!(
            may_open(DeviceStatus::Lost, "Laddar inte")
                .expect_err("lost")
                .field(),
            "device_id"
        );
        assert_eq!(
            may_open(DeviceStatus::InStock, " ")
                .expect_err("empty")
                .field(),
            "fault"
        );
        for s in ALL_STATES {
            assert_eq!(WarrantyState::parse(s.as_str()), Ok(s));
        }
    }

    #[test]
    fn only_a_wipe_after_the_case_opened_lets_the_phone_leave() {
        let at = |s: &str| -> DateTime<Utc> { s.parse().expect("time") };
        let opened = at("2026-11-23T09:00:00Z");
        assert!(!wiped_since(opened, Some(at("2026-11-22T09:00:00Z")), None));
        assert!(wiped_since(opened, Some(at("2026-11-23T10:00:00Z")), None));
        assert!(wiped_since(opened, None, Some(at("2026-11-23T10:00:00Z"))));
        let wiped = PhoneNow {
            wiped: true,
            ..PhoneNow::default()
        };
        assert_eq!(
            check_transition(Opened, SentToSupplier, PhoneNow::default())
                .expect_err("unwiped")
                .kind,
            "wipe-required"
        );
        assert_eq!(
            check_transition(Opened, Repaired, wiped)
                .expect_err("skip")
                .kind,
            "warranty-transition"
        );
        assert_eq!(
            check_transition(Opened, SentToSupplier, wiped),
            Ok(SentToSupplier)
        );
    }

    #[test]
    fn the_phone_is_in_repair_at_the_supplier_and_comes_back_or_retires() {
        assert_eq!(
            status_after(SentToSupplier, true),
            Some(DeviceStatus::InRepair)
        );
        assert_eq!(status_after(Repaired, true), Some(DeviceStatus::Leased));
        assert_eq!(status_after(Rejected, false), Some(DeviceStatus::InStock));
        assert_eq!(status_after(Replaced, true), Some(DeviceStatus::Retired));
        assert_eq!(status_after(Closed, true), None);
    }

    #[test]
    fn a_replacement_takes_over_only_when_in_stock_enrolled_and_compliant() {
        assert_eq!(
            may_swap(Opened, true, DeviceStatus::InStock, true, true),
            Ok(())
        );
        let kind = |r: Result<(), Refusal>| r.expect_err("refused").kind;
        assert_eq!(
            kind(may_swap(Closed, true, DeviceStatus::InStock, true, true)),
            "warranty-transition"
        );
        assert_eq!(
            kind(may_swap(Opened, false, DeviceStatus::InStock, true, true)),
            "not-leased"
        );
        assert_eq!(
            kind(may_swap(Opened, true, DeviceStatus::Leased, true, true)),
            "replacement-unavailable"
        );
        assert_eq!(
            kind(may_swap(Opened, true, DeviceStatus::InStock, false, true)),
            "replacement-not-enrolled"
        );
        assert_eq!(
            kind(may_swap(Opened, true, DeviceStatus::InStock, true, false)),
            "replacement-not-compliant"
        );
    }

    #[test]
    fn a_lost_phone_waits_and_a_leased_phone_is_not_retired_by_its_case() {
        let leased = PhoneNow {
            wiped: true,
            lease_open: true,
            lost: false,
        };
        assert_eq!(
            check_transition(SentToSupplier, Replaced, leased)
                .expect_err("leased")
                .kind,
            "lease-open"
        );
        assert_eq!(
            check_transition(SentToSupplier, Repaired, leased),
            Ok(Repaired)
        );
        let lost = PhoneNow {
            lost: true,
            ..leased
        };
        assert_eq!(
            check_transition(Opened, SentToSupplier, lost)
                .expect_err("lost")
                .kind,
            "device-lost"
        );
        assert_eq!(check_transition(Opened, Closed, lost), Ok(Closed));
    }
}
