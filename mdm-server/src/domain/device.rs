//! Devices: platforms, lifecycle statuses and the identifiers printed on the box.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::calendar::check_date;
use super::{luhn, DomainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Android,
    Ios,
}

/// How the server reaches a phone: through our agent, or (iPhones) through Apple's built-in
/// MDM protocol. The rules are the same whichever way; only the transport differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    #[default]
    Agent,
    AppleMdm,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Agent => "agent",
            Channel::AppleMdm => "apple_mdm",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s.trim() {
            "agent" => Ok(Channel::Agent),
            "apple_mdm" => Ok(Channel::AppleMdm),
            other => Err(DomainError::invalid(
                "channel",
                format!("unknown channel '{other}'; expected agent or apple_mdm"),
            )),
        }
    }

    /// The platform a phone enrolled this way must have, if the way decides it.
    pub fn platform(self) -> Option<Platform> {
        match self {
            Channel::Agent => None,
            Channel::AppleMdm => Some(Platform::Ios),
        }
    }
}

impl From<Platform> for profiles::apps::Platform {
    fn from(p: Platform) -> Self {
        match p {
            Platform::Android => profiles::apps::Platform::Android,
            Platform::Ios => profiles::apps::Platform::Ios,
        }
    }
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Android => "android",
            Platform::Ios => "ios",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "android" => Ok(Platform::Android),
            "ios" => Ok(Platform::Ios),
            other => Err(DomainError::invalid(
                "platform",
                format!("unknown platform '{other}'; expected android or ios"),
            )),
        }
    }

    /// Whether an Apple configuration profile means anything to a phone of this platform.
    pub fn takes_apple_profiles(self) -> Result<(), super::Refusal> {
        match self {
            Platform::Ios => Ok(()),
            Platform::Android => Err(super::Refusal::new(
                "wrong-platform",
                "an Apple configuration profile is for iPhones, and this phone runs Android: its \
                 policy reaches it from GET /api/v1/devices/{id}/policy",
            )),
        }
    }
}

/// Where a phone is in its life. A new phone starts `in_stock`; the transitions between the
/// other states belong to leasing, lost cases and wipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    InStock,
    Leased,
    InRepair,
    Lost,
    AwaitingWipe,
    Retired,
}

pub const ALL_STATUSES: [DeviceStatus; 6] = [
    DeviceStatus::InStock,
    DeviceStatus::Leased,
    DeviceStatus::InRepair,
    DeviceStatus::Lost,
    DeviceStatus::AwaitingWipe,
    DeviceStatus::Retired,
];

impl DeviceStatus {
    /// Whether the phone is in use or can be: not retired and not waiting to be wiped. Only
    /// these count in compliance dashboards and licence accounting.
    pub fn in_service(self) -> bool {
        !matches!(self, DeviceStatus::Retired | DeviceStatus::AwaitingWipe)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::InStock => "in_stock",
            DeviceStatus::Leased => "leased",
            DeviceStatus::InRepair => "in_repair",
            DeviceStatus::Lost => "lost",
            DeviceStatus::AwaitingWipe => "awaiting_wipe",
            DeviceStatus::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        ALL_STATUSES.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            DomainError::invalid(
                "status",
                format!("unknown status '{s}'; expected one of in_stock, leased, in_repair, lost, awaiting_wipe, retired"),
            )
        })
    }
}

/// A 15-digit IMEI with a valid Luhn check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Imei(String);

impl Imei {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let digits: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.len() != 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::invalid(
                "imei",
                format!("'{input}' is not an IMEI; expected 15 digits"),
            ));
        }
        if !luhn::is_valid(&digits) {
            return Err(DomainError::invalid(
                "imei",
                format!("'{input}' has a wrong check digit"),
            ));
        }
        Ok(Imei(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits back to front: the last digits people read off a label become a prefix.
    pub fn reversed(&self) -> String {
        self.0.chars().rev().collect()
    }
}

impl TryFrom<String> for Imei {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Imei::parse(&value)
    }
}

impl From<Imei> for String {
    fn from(value: Imei) -> Self {
        value.0
    }
}

impl fmt::Display for Imei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A manufacturer's serial number: 4 to 32 letters, digits or hyphens, kept upper-case so that
/// the same phone typed twice is the same phone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(String);

impl Serial {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let serial = input.trim().to_ascii_uppercase();
        let ok = (4..=32).contains(&serial.len())
            && serial
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(DomainError::invalid(
                "serial",
                format!(
                    "'{input}' is not a serial number; expected 4 to 32 letters, digits or hyphens"
                ),
            ));
        }
        Ok(Serial(serial))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Serial {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Serial::parse(&value)
    }
}

impl From<Serial> for String {
    fn from(value: Serial) -> Self {
        value.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Purchase and warranty dates must make sense together.
pub fn check_warranty(
    purchase: Option<chrono::NaiveDate>,
    warranty_end: Option<chrono::NaiveDate>,
) -> Result<(), DomainError> {
    check_date("purchase_date", purchase)?;
    check_date("warranty_end", warranty_end)?;
    match (purchase, warranty_end) {
        (Some(p), Some(w)) if w < p => Err(DomainError::invalid(
            "warranty_end",
            format!("the warranty cannot end ({w}) before the phone was bought ({p})"),
        )),
        _ => Ok(()),
    }
}

/// Whether a device certificate still proves who the phone is: not revoked and not expired.
/// The one rule for a live identity; the store's certificate lookups ask the same in SQL
/// (`revoked_at IS NULL AND not_after > now`).
pub fn identity_is_live(
    revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    not_after: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    revoked_at.is_none() && not_after > now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imei_needs_fifteen_digits_and_the_check_digit() {
        assert_eq!(
            Imei::parse("49-015420-323751-8").expect("ok").as_str(),
            "490154203237518"
        );
        assert!(Imei::parse("490154203237517").is_err());
        assert!(Imei::parse("49015420323751").is_err());
        assert!(Imei::parse("49015420323751X").is_err());
    }

    #[test]
    fn serial_is_upper_cased_and_bounded() {
        assert_eq!(
            Serial::parse(" r58n12abcde ").expect("ok").as_str(),
            "R58N12ABCDE"
        );
        assert!(Serial::parse("ab").is_err());
        assert!(Serial::parse("AB CD EF").is_err());
        assert!(Serial::parse(&"A".repeat(33)).is_err());
    }

    #[test]
    fn statuses_and_platforms_round_trip() {
        for s in ALL_STATUSES {
            assert_eq!(DeviceStatus::parse(s.as_str()), Ok(s));
        }
        assert!(DeviceStatus::parse("gone").is_err());
        assert_eq!(Platform::parse("iOS"), Ok(Platform::Ios));
        assert!(Platform::parse("symbian").is_err());
    }

    #[test]
    fn warranty_cannot_end_before_purchase() {
        let d = |s: &str| Some(s.parse().expect("date"));
        assert!(check_warranty(d("2026-01-10"), d("2028-01-10")).is_ok());
        assert!(check_warranty(d("2026-01-10"), d("2025-01-10")).is_err());
        assert!(check_warranty(None, d("2025-01-10")).is_ok());
    }

    #[test]
    fn an_identity_is_live_until_it_is_revoked_or_runs_out() {
        let now: chrono::DateTime<chrono::Utc> = "2026-12-04T10:00:00Z".parse().expect("time");
        let later = now + chrono::Duration::days(1);
        assert!(identity_is_live(None, later, now));
        assert!(!identity_is_live(Some(now), later, now));
        assert!(!identity_is_live(None, now, now), "expired at this instant");
    }
}
