//! SIM subscriptions: the card (ICCID with its check digit), its number, phone company and plan,
//! its status (active → block requested → blocked → terminated, and back to active when
//! re-activated), and the mobile-data alerts at 80 % and 100 % of the plan.

use super::contact::MobileNumber;
use super::organisation::check_text;
use super::{luhn, DomainError, Refusal};

/// An ICCID of 19 or 20 digits, `89` first (telecommunication), ending in its Luhn check digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iccid(String);

impl Iccid {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let digits: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let shaped = (19..=20).contains(&digits.len())
            && digits.starts_with("89")
            && digits.bytes().all(|b| b.is_ascii_digit());
        if !shaped {
            return Err(DomainError::invalid(
                "iccid",
                format!("'{input}' is not an ICCID: 19 or 20 digits starting with 89"),
            ));
        }
        if !luhn::is_valid(&digits) {
            return Err(DomainError::invalid(
                "iccid",
                format!("'{input}' has a wrong check digit"),
            ));
        }
        Ok(Iccid(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimStatus {
    Active,
    BlockRequested,
    Blocked,
    Terminated,
}

pub const ALL_SIM_STATUSES: [SimStatus; 4] = [
    SimStatus::Active,
    SimStatus::BlockRequested,
    SimStatus::Blocked,
    SimStatus::Terminated,
];

impl SimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SimStatus::Active => "active",
            SimStatus::BlockRequested => "block_requested",
            SimStatus::Blocked => "blocked",
            SimStatus::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        ALL_SIM_STATUSES
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                DomainError::invalid(
                    "status",
                    format!("'{s}' is not a SIM status; expected active, block_requested, blocked or terminated"),
                )
            })
    }
}

/// Moves a SIM; a refusal says what must happen first.
pub fn transition(from: SimStatus, to: SimStatus) -> Result<SimStatus, Refusal> {
    use SimStatus::*;
    match (from, to) {
        (Active, BlockRequested)
        | (BlockRequested, Blocked)
        // Re-activation: the phone was found, or the block was a mistake.
        | (BlockRequested | Blocked, Active)
        | (Active | BlockRequested | Blocked, Terminated) => Ok(to),
        (Terminated, _) => Err(Refusal::new(
            "sim-terminated",
            "the subscription is terminated: register a new SIM instead",
        )),
        (Active, Blocked) => Err(Refusal::new(
            "sim-transition",
            "request the block first (block_requested), then confirm it when the phone company has blocked the SIM",
        )),
        _ => Err(Refusal::new(
            "sim-transition",
            format!("the SIM is {} already", from.as_str().replace('_', " ")),
        )),
    }
}

/// What a loss report does to the phone's SIM: an active SIM's block is requested; a SIM
/// blocked, being blocked or terminated stays as it is.
pub fn on_loss(status: SimStatus) -> Option<SimStatus> {
    transition(status, SimStatus::BlockRequested).ok()
}

/// Whether a found phone's SIM needs its re-activation requested: it was blocked, or its block
/// was requested.
pub fn needs_reactivation(status: SimStatus) -> bool {
    matches!(status, SimStatus::BlockRequested | SimStatus::Blocked)
}

/// Checks a subscription's number, phone company and plan.
pub fn check_subscription(
    phone_number: &str,
    carrier: &str,
    plan: &str,
    data_gb: u32,
) -> Result<MobileNumber, DomainError> {
    let number = MobileNumber::parse(phone_number)
        .map_err(|e| DomainError::invalid("phone_number", e.message().to_string()))?;
    for (field, text) in [("carrier", carrier), ("plan", plan)] {
        if text.trim().is_empty() {
            return Err(DomainError::invalid(field, "must not be empty"));
        }
        check_text(field, text, 100)?;
    }
    if !(1..=10_000).contains(&data_gb) {
        return Err(DomainError::invalid(
            "data_gb",
            "the data included each month is 1 to 10000 GB",
        ));
    }
    Ok(number)
}

/// The shares of the plan at which the provider admin is told, once each per month.
pub const DATA_ALERT_PERCENTS: [u32; 2] = [80, 100];

/// The alert due for `used_bytes` of a `plan_gb` plan, given the highest already sent this month
/// (`None` if none): the highest threshold crossed that has not been reported.
pub fn data_alert_due(used_bytes: u64, plan_gb: u32, already: Option<u32>) -> Option<u32> {
    let plan = u128::from(plan_gb) * 1_000_000_000;
    if plan == 0 {
        return None;
    }
    let used = u128::from(used_bytes) * 100;
    DATA_ALERT_PERCENTS
        .into_iter()
        .rev()
        .find(|p| used >= plan * u128::from(*p))
        .filter(|p| already.is_none_or(|a| *p > a))
}

/// The SIM recorded for a phone, as a check-in sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOnRecord<'a> {
    pub iccid: &'a str,
    pub data_gb: u32,
    /// The month (`YYYY-MM`) and share of the plan last reported.
    pub alerted: Option<(&'a str, u32)>,
}

/// What a check-in's report changes about the SIM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimFindings {
    /// `Some(Some(iccid))`: flag another card than recorded; `Some(None)`: clear the flag.
    pub mismatch: Option<Option<String>>,
    /// A data alert due, as a share of the plan.
    pub data_alert: Option<u32>,
}

impl SimFindings {
    pub fn is_empty(&self) -> bool {
        self.mismatch.is_none() && self.data_alert.is_none()
    }
}

/// The card a phone reports when it is not the SIM on record: what the operator is shown as a
/// mismatch. A phone without a recorded SIM, or one that reports no card, is not judged:
/// nothing is expected of it. Judged again whenever either side changes: a SIM placed in the
/// phone or taken out, and every report of the phone.
pub fn card_mismatch(recorded: Option<&str>, reported: Option<&str>) -> Option<String> {
    match (recorded, reported) {
        (Some(recorded), Some(reported)) if recorded != reported => Some(reported.to_string()),
        _ => None,
    }
}

/// Compares what the phone reports (`reported_iccid`, data used this month) with its recorded
/// SIM. A phone without a recorded SIM is not judged: nothing is expected of it.
pub fn judge_report(
    record: Option<SimOnRecord<'_>>,
    flagged: Option<&str>,
    reported_iccid: Option<&str>,
    used_bytes: Option<u64>,
    month: &str,
) -> SimFindings {
    let Some(record) = record else {
        return SimFindings::default();
    };
    let mismatch = reported_iccid
        .map(|reported| card_mismatch(Some(record.iccid), Some(reported)))
        .filter(|judged| judged.as_deref() != flagged);
    let already = record
        .alerted
        .filter(|(m, _)| *m == month)
        .map(|(_, percent)| percent);
    SimFindings {
        mismatch,
        data_alert: used_bytes.and_then(|used| data_alert_due(used, record.data_gb, already)),
    }
}

#[cfg(test)]
mod tests {
    use super::SimStatus::*;
    use super::*;

    #[test]
    fn an_iccid_needs_its_check_digit() {
        assert_eq!(
            Iccid::parse("8946 0000 0000 0000 0018")
                .expect("valid")
                .as_str(),
            "89460000000000000018"
        );
        assert!(Iccid::parse("89460000000000000019").is_err(), "check digit");
        assert!(Iccid::parse("1946000000000000001").is_err(), "not 89");
        assert!(Iccid::parse("894600000000018").is_err(), "too short");
    }

    #[test]
    fn sim_statuses_move_through_block_and_back_to_active() {
        assert_eq!(transition(Active, BlockRequested), Ok(BlockRequested));
        assert_eq!(transition(BlockRequested, Blocked), Ok(Blocked));
        assert_eq!(transition(Blocked, Active), Ok(Active));
        assert_eq!(transition(BlockRequested, Active), Ok(Active));
        assert_eq!(transition(Blocked, Terminated), Ok(Terminated));
        assert_eq!(
            transition(Active, Blocked).expect_err("skip").kind,
            "sim-transition"
        );
        assert_eq!(
            transition(Active, Active).expect_err("same").kind,
            "sim-transition"
        );
        for to in ALL_SIM_STATUSES {
            assert_eq!(
                transition(Terminated, to).expect_err("final").kind,
                "sim-terminated"
            );
        }
        for s in ALL_SIM_STATUSES {
            assert_eq!(SimStatus::parse(s.as_str()), Ok(s));
        }
    }

    #[test]
    fn a_subscription_needs_a_mobile_number_a_company_and_a_plan() {
        assert!(check_subscription("+46701234567", "Telia", "Jobbmobil 100 GB", 100).is_ok());
        let field = |r: Result<MobileNumber, DomainError>| r.expect_err("refused").field();
        assert_eq!(
            field(check_subscription("12", "Telia", "P", 100)),
            "phone_number"
        );
        assert_eq!(
            field(check_subscription("+46701234567", " ", "P", 100)),
            "carrier"
        );
        assert_eq!(
            field(check_subscription("+46701234567", "Telia", "P", 0)),
            "data_gb"
        );
    }

    #[test]
    fn data_alerts_go_at_80_and_100_percent_once_each() {
        let gb = 1_000_000_000u64;
        assert_eq!(data_alert_due(79 * gb, 100, None), None);
        assert_eq!(data_alert_due(80 * gb, 100, None), Some(80));
        assert_eq!(data_alert_due(90 * gb, 100, Some(80)), None);
        assert_eq!(data_alert_due(100 * gb, 100, Some(80)), Some(100));
        assert_eq!(data_alert_due(120 * gb, 100, None), Some(100));
        assert_eq!(data_alert_due(120 * gb, 100, Some(100)), None);
    }

    #[test]
    fn a_check_in_flags_another_sim_once_and_alerts_once_per_month() {
        let gb = 1_000_000_000u64;
        let record = SimOnRecord {
            iccid: "89460000000000000018",
            data_gb: 100,
            alerted: Some(("2026-11", 80)),
        };
        let other = "89460000000000000026";
        let found = judge_report(Some(record), None, Some(other), None, "2026-11");
        assert_eq!(found.mismatch, Some(Some(other.to_string())));
        assert!(judge_report(Some(record), Some(other), Some(other), None, "2026-11").is_empty());
        assert_eq!(
            judge_report(
                Some(record),
                Some(other),
                Some(record.iccid),
                None,
                "2026-11"
            )
            .mismatch,
            Some(None),
            "the right card again clears the flag"
        );
        // 85 GB in November: 80 % was reported this month already.
        assert!(judge_report(Some(record), None, None, Some(85 * gb), "2026-11").is_empty());
        // A new month starts over.
        assert_eq!(
            judge_report(Some(record), None, None, Some(85 * gb), "2026-12").data_alert,
            Some(80)
        );
        assert!(judge_report(None, None, Some(other), Some(500 * gb), "2026-11").is_empty());
    }

    #[test]
    fn a_loss_requests_the_block_of_an_active_sim_only_and_finding_the_phone_undoes_it() {
        use SimStatus::*;
        assert_eq!(on_loss(Active), Some(BlockRequested));
        for other in [BlockRequested, Blocked, Terminated] {
            assert_eq!(on_loss(other), None, "{other:?}");
        }
        assert!(needs_reactivation(BlockRequested));
        assert!(needs_reactivation(Blocked));
        assert!(!needs_reactivation(Active));
        assert!(!needs_reactivation(Terminated));
    }
}
