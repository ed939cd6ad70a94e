//! Leases and holders: a phone leased to a provider, handed to a named holder or kept in the
//! provider's pool, and returned. Who may have a phone next is decided here, with the wipe gate.

use chrono::NaiveDate;

use super::calendar::check_date;
use super::device::DeviceStatus;
use super::organisation::ContractPeriod;
use super::wipe_gate::{WipeEvidence, WipeMissing};
use super::{DomainError, Refusal};

/// The mobile data the contracts include each month.
pub const INCLUDED_DATA_GB: u32 = 100;
/// A monthly price above this (in kronor) is a typing error.
const MAX_MONTHLY_PRICE_SEK: f64 = 100_000.0;

/// What a lease says: when it runs, what it costs, and the data included (calls and SMS are
/// free in every plan).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaseTerms {
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
    /// In öre, so that money is never a float in storage.
    pub monthly_price_ore: i64,
    pub data_gb: u32,
}

impl LeaseTerms {
    /// Terms from what a person typed; the price in kronor with at most two decimals.
    pub fn parse(
        starts_on: NaiveDate,
        ends_on: Option<NaiveDate>,
        monthly_price_sek: f64,
        data_gb: Option<u32>,
    ) -> Result<Self, DomainError> {
        check_date("starts_on", Some(starts_on))?;
        check_date("ends_on", ends_on)?;
        if ends_on.is_some_and(|end| end <= starts_on) {
            return Err(DomainError::invalid(
                "ends_on",
                "a lease must end after it starts",
            ));
        }
        let ore = (monthly_price_sek * 100.0).round();
        if !monthly_price_sek.is_finite()
            || !(0.0..=MAX_MONTHLY_PRICE_SEK).contains(&monthly_price_sek)
            || (ore - monthly_price_sek * 100.0).abs() > 1e-6
        {
            return Err(DomainError::invalid(
                "monthly_price_sek",
                format!("a price in kronor from 0 to {MAX_MONTHLY_PRICE_SEK}, with at most two decimals"),
            ));
        }
        let data_gb = data_gb.unwrap_or(INCLUDED_DATA_GB);
        if !(1..=10_000).contains(&data_gb) {
            return Err(DomainError::invalid(
                "data_gb",
                "the data included each month is 1 to 10000 GB",
            ));
        }
        Ok(LeaseTerms {
            starts_on,
            ends_on,
            monthly_price_ore: ore as i64,
            data_gb,
        })
    }
}

impl LeaseTerms {
    /// The terms a replacement phone takes over from the lease it replaces (a written-off or
    /// swapped phone's), from `starts_on`: the same price and data, and its end date unless
    /// that has come by then.
    pub fn carried_over(
        starts_on: NaiveDate,
        ends_on: Option<NaiveDate>,
        monthly_price_ore: i64,
        data_gb: i64,
    ) -> Self {
        LeaseTerms {
            starts_on,
            ends_on: ends_on.filter(|end| *end > starts_on),
            monthly_price_ore,
            data_gb: u32::try_from(data_gb).unwrap_or(INCLUDED_DATA_GB),
        }
    }
}

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    Returned,
    ContractEnded,
    WrittenOff,
    /// A replacement took over the lease from a faulty phone (warranty swap).
    Swapped,
}

impl LeaseEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseEnd::Returned => "returned",
            LeaseEnd::ContractEnded => "contract_ended",
            LeaseEnd::WrittenOff => "written_off",
            LeaseEnd::Swapped => "swapped",
        }
    }

    /// The phone's status once the lease has ended this way: a returned phone waits for its
    /// wipe, a written-off one is retired, a swapped one stays with its warranty case.
    pub fn status_after(self) -> DeviceStatus {
        match self {
            LeaseEnd::Returned | LeaseEnd::ContractEnded => DeviceStatus::AwaitingWipe,
            LeaseEnd::WrittenOff => DeviceStatus::Retired,
            LeaseEnd::Swapped => DeviceStatus::InRepair,
        }
    }

    /// The status of a phone that was `current` when its lease ended this way: a lost phone or
    /// one in repair keeps its status (its case brings it on); any other takes
    /// [`LeaseEnd::status_after`].
    pub fn status_from(self, current: DeviceStatus) -> DeviceStatus {
        match current {
            DeviceStatus::Lost | DeviceStatus::InRepair => current,
            _ => self.status_after(),
        }
    }
}

/// The refusal for a phone that has not passed the wipe gate.
pub fn wipe_required(missing: WipeMissing) -> Refusal {
    Refusal::new("wipe-required", missing.explain()).missing(missing.code())
}

/// What the records say about a phone when someone wants to lease it or hand it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneState {
    pub status: DeviceStatus,
    /// The provider of its open lease, if it has one.
    pub leased_to: Option<i64>,
    pub holder: Option<i64>,
    pub wipe: WipeEvidence,
    /// The provider the phone sits with (a phone registered at a provider without a lease).
    pub placed_with: Option<i64>,
}

/// A provider gets phones only while its contract runs.
pub fn check_contract(contract: Option<ContractPeriod>, today: NaiveDate) -> Result<(), Refusal> {
    if contract.is_some_and(|c| c.is_active_on(today)) {
        Ok(())
    } else {
        Err(Refusal::new(
            "contract-not-running",
            "the provider's contract is not running today: a phone is leased only while it runs",
        ))
    }
}

/// A phone changes provider only through a lease and its return, never by editing its record,
/// so the wipe-before-reassign rule cannot be stepped around.
pub fn check_record_move(from: Option<i64>, to: Option<i64>) -> Result<(), Refusal> {
    if from == to {
        Ok(())
    } else {
        Err(Refusal::new(
            "lease-required",
            "a phone moves to a provider with a lease (POST /api/v1/leases) and back with its return (POST /api/v1/devices/{id}/return)",
        ))
    }
}

/// Whether the phone may be leased to `provider`.
pub fn may_lease(phone: &PhoneState, provider: i64) -> Result<(), Refusal> {
    if phone.leased_to.is_some() {
        return Err(Refusal::new(
            "lease-open",
            "the phone is leased already: it must be returned before it is leased again",
        ));
    }
    match phone.status {
        DeviceStatus::Lost => {
            return Err(Refusal::new(
                "device-lost",
                "the phone is reported lost: its lost case must end with it found first",
            ))
        }
        DeviceStatus::InRepair => {
            return Err(Refusal::new(
                "device-in-repair",
                "the phone is in repair: its warranty case must be closed first",
            ))
        }
        DeviceStatus::Retired => {
            return Err(Refusal::new(
                "device-retired",
                "the phone is retired and cannot be leased",
            ))
        }
        DeviceStatus::AwaitingWipe => {
            return Err(wipe_required(
                phone
                    .wipe
                    .check()
                    .err()
                    .unwrap_or(WipeMissing::NotAcknowledged),
            ))
        }
        DeviceStatus::InStock | DeviceStatus::Leased => {}
    }
    if phone.placed_with.is_some_and(|p| p != provider) {
        return Err(Refusal::new(
            "device-placed",
            "the phone sits with another provider: take it back to stock first",
        ));
    }
    phone.wipe.check().map_err(wipe_required)
}

/// Whether the phone may go from its current holder to `next` (`None`: back to the pool).
/// Ending a holding is always allowed; a new holder needs the previous holder's data gone.
pub fn may_set_holder(phone: &PhoneState, next: Option<i64>) -> Result<(), Refusal> {
    if phone.leased_to.is_none() {
        return Err(Refusal::new(
            "not-leased",
            "the phone is not leased: lease it to the provider first",
        ));
    }
    if phone.status != DeviceStatus::Leased {
        return Err(Refusal::new(
            "device-unavailable",
            format!(
                "the phone is {}: it gets a holder only while it is leased and in use",
                phone.status.as_str().replace('_', " ")
            ),
        ));
    }
    match (phone.holder, next) {
        (_, None) => Ok(()),
        (Some(current), Some(next)) if current == next => Ok(()),
        // The current holder's data is on the phone: their holding ends first, then the wipe.
        (Some(_), Some(_)) => Err(wipe_required(WipeMissing::InUse)),
        (None, Some(_)) => phone.wipe.check().map_err(wipe_required),
    }
}

/// Whether the phone may go to someone new now (another holder, or another provider after its
/// return), and if not, the first thing missing: a phone someone holds is never ready.
pub fn ready_for_someone_new(holder: Option<i64>, wipe: &WipeEvidence) -> Result<(), WipeMissing> {
    if holder.is_some() {
        return Err(WipeMissing::InUse);
    }
    wipe.check()
}

/// Whether `provider` may return the phone.
pub fn may_return(phone: &PhoneState, provider: i64) -> Result<(), Refusal> {
    if phone.leased_to != Some(provider) {
        return Err(Refusal::new(
            "not-leased",
            "the phone is not leased to this provider, so it cannot be returned",
        ));
    }
    if phone.status == DeviceStatus::Lost {
        return Err(Refusal::new(
            "device-lost",
            "the phone is reported lost: its lost case ends it (found, or written off)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn at(s: &str) -> Option<DateTime<Utc>> {
        Some(s.parse().expect("time"))
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn new_phone() -> PhoneState {
        PhoneState {
            status: DeviceStatus::InStock,
            leased_to: None,
            holder: None,
            wipe: WipeEvidence::default(),
            placed_with: None,
        }
    }

    fn returned_unwiped() -> PhoneState {
        PhoneState {
            wipe: WipeEvidence {
                assignment_ended_at: at("2026-11-02T09:00:00Z"),
                enrolled_at: at("2026-01-02T09:00:00Z"),
                ..WipeEvidence::default()
            },
            ..new_phone()
        }
    }

    #[test]
    fn terms_need_an_end_after_the_start_and_a_price_in_kronor_and_ore() {
        let t = LeaseTerms::parse(day("2026-12-01"), Some(day("2029-11-30")), 249.5, None)
            .expect("terms");
        assert_eq!(t.monthly_price_ore, 24950);
        assert_eq!(t.data_gb, INCLUDED_DATA_GB);
        let field = |r: Result<LeaseTerms, DomainError>| r.expect_err("refused").field();
        assert_eq!(
            field(LeaseTerms::parse(
                day("2026-12-01"),
                Some(day("2026-12-01")),
                1.0,
                None
            )),
            "ends_on"
        );
        assert_eq!(
            field(LeaseTerms::parse(day("2026-12-01"), None, -1.0, None)),
            "monthly_price_sek"
        );
        assert_eq!(
            field(LeaseTerms::parse(day("2026-12-01"), None, 1.005, None)),
            "monthly_price_sek"
        );
        assert_eq!(
            field(LeaseTerms::parse(day("2026-12-01"), None, f64::NAN, None)),
            "monthly_price_sek"
        );
        assert_eq!(
            field(LeaseTerms::parse(day("2026-12-01"), None, 1.0, Some(0))),
            "data_gb"
        );
    }

    #[test]
    fn a_new_phone_may_be_leased_and_an_unwiped_returned_one_may_not() {
        assert_eq!(may_lease(&new_phone(), 7), Ok(()));
        let refused = may_lease(&returned_unwiped(), 7).expect_err("refused");
        assert_eq!(refused.kind, "wipe-required");
        assert!(refused.detail.contains("wipe"));
    }

    #[test]
    fn lost_repaired_retired_leased_or_placed_elsewhere_phones_are_not_leased() {
        let with = |status| PhoneState {
            status,
            ..new_phone()
        };
        let kind = |p: PhoneState| may_lease(&p, 7).expect_err("refused").kind;
        assert_eq!(kind(with(DeviceStatus::Lost)), "device-lost");
        assert_eq!(kind(with(DeviceStatus::InRepair)), "device-in-repair");
        assert_eq!(kind(with(DeviceStatus::Retired)), "device-retired");
        assert_eq!(kind(with(DeviceStatus::AwaitingWipe)), "wipe-required");
        assert_eq!(
            kind(PhoneState {
                leased_to: Some(3),
                ..new_phone()
            }),
            "lease-open"
        );
        assert_eq!(
            kind(PhoneState {
                placed_with: Some(3),
                ..new_phone()
            }),
            "device-placed"
        );
        assert_eq!(
            may_lease(
                &PhoneState {
                    placed_with: Some(7),
                    ..new_phone()
                },
                7
            ),
            Ok(())
        );
    }

    #[test]
    fn a_holder_changes_only_through_the_pool_and_a_wipe() {
        let leased = PhoneState {
            status: DeviceStatus::Leased,
            leased_to: Some(7),
            ..new_phone()
        };
        // A new phone's first holder.
        assert_eq!(may_set_holder(&leased, Some(1)), Ok(()));
        let held = PhoneState {
            holder: Some(1),
            ..leased
        };
        assert_eq!(may_set_holder(&held, Some(1)), Ok(()), "the same holder");
        assert_eq!(may_set_holder(&held, None), Ok(()), "back to the pool");
        assert_eq!(
            may_set_holder(&held, Some(2)).expect_err("refused").kind,
            "wipe-required"
        );
        assert_eq!(
            ready_for_someone_new(held.holder, &held.wipe),
            Err(WipeMissing::InUse),
            "a held phone is never ready for someone new, whatever its wipes"
        );
        // Back in the pool after holder 1, not yet wiped.
        let pooled = PhoneState {
            wipe: returned_unwiped().wipe,
            ..leased
        };
        assert_eq!(
            may_set_holder(&pooled, Some(2)),
            Err(wipe_required(WipeMissing::NotSent))
        );
        let wiped = PhoneState {
            wipe: WipeEvidence {
                wipe_sent_at: at("2026-11-02T10:00:00Z"),
                wipe_acknowledged_at: at("2026-11-02T11:00:00Z"),
                enrolled_at: at("2026-11-02T12:00:00Z"),
                ..pooled.wipe
            },
            ..pooled
        };
        assert_eq!(may_set_holder(&wiped, Some(2)), Ok(()));
        assert_eq!(
            may_set_holder(&new_phone(), Some(2))
                .expect_err("refused")
                .kind,
            "not-leased"
        );
        let lost = PhoneState {
            status: DeviceStatus::Lost,
            ..leased
        };
        assert_eq!(
            may_set_holder(&lost, Some(2)).expect_err("refused").kind,
            "device-unavailable"
        );
    }

    #[test]
    fn only_the_leasing_provider_returns_and_not_while_the_phone_is_lost() {
        let leased = PhoneState {
            status: DeviceStatus::Leased,
            leased_to: Some(7),
            ..new_phone()
        };
        assert_eq!(may_return(&leased, 7), Ok(()));
        assert_eq!(
            may_return(&leased, 8).expect_err("refused").kind,
            "not-leased"
        );
        assert_eq!(
            may_return(&new_phone(), 7).expect_err("refused").kind,
            "not-leased"
        );
        let lost = PhoneState {
            status: DeviceStatus::Lost,
            ..leased
        };
        assert_eq!(
            may_return(&lost, 7).expect_err("refused").kind,
            "device-lost"
        );
    }

    #[test]
    fn a_returned_phone_waits_for_its_wipe_and_a_written_off_one_retires() {
        assert_eq!(
            LeaseEnd::Returned.status_after(),
            DeviceStatus::AwaitingWipe
        );
        assert_eq!(
            LeaseEnd::ContractEnded.status_after(),
            DeviceStatus::AwaitingWipe
        );
        assert_eq!(LeaseEnd::WrittenOff.status_after(), DeviceStatus::Retired);
    }

    #[test]
    fn phones_are_leased_only_while_the_contract_runs() {
        let c = ContractPeriod::new(day("2026-01-01"), Some(day("2026-12-31"))).expect("c");
        assert_eq!(check_contract(Some(c), day("2026-12-31")), Ok(()));
        assert_eq!(
            check_contract(Some(c), day("2027-01-01"))
                .expect_err("ended")
                .kind,
            "contract-not-running"
        );
        assert!(check_contract(None, day("2026-06-01")).is_err());
    }

    #[test]
    fn editing_a_record_never_moves_a_phone_between_providers() {
        assert_eq!(check_record_move(Some(3), Some(3)), Ok(()));
        assert_eq!(check_record_move(None, None), Ok(()));
        for (from, to) in [(None, Some(3)), (Some(3), None), (Some(3), Some(4))] {
            assert_eq!(
                check_record_move(from, to).expect_err("moved").kind,
                "lease-required"
            );
        }
    }

    #[test]
    fn a_replacement_keeps_the_price_and_data_and_an_end_still_ahead() {
        let t = LeaseTerms::carried_over(day("2026-12-01"), Some(day("2029-11-30")), 24950, 100);
        assert_eq!(
            (t.starts_on, t.ends_on, t.monthly_price_ore, t.data_gb),
            (day("2026-12-01"), Some(day("2029-11-30")), 24950, 100)
        );
        let past = LeaseTerms::carried_over(day("2026-12-01"), Some(day("2026-11-30")), 1, 100);
        assert_eq!(past.ends_on, None);
    }

    #[test]
    fn a_lease_end_leaves_a_lost_phone_or_one_in_repair_as_it_is() {
        use DeviceStatus::*;
        assert_eq!(LeaseEnd::Returned.status_from(Leased), AwaitingWipe);
        assert_eq!(LeaseEnd::ContractEnded.status_from(Leased), AwaitingWipe);
        assert_eq!(LeaseEnd::ContractEnded.status_from(Lost), Lost);
        assert_eq!(LeaseEnd::ContractEnded.status_from(InRepair), InRepair);
        assert_eq!(LeaseEnd::WrittenOff.status_from(Lost), Lost);
        assert_eq!(LeaseEnd::WrittenOff.status_from(Leased), Retired);
    }
}
