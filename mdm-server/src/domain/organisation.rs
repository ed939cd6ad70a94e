//! Organisations: the one operator and its providers, their organisation numbers and contracts.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;

use super::calendar::check_date;
use super::{luhn, DomainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    Operator,
    Provider,
}

impl OrgKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Operator => "operator",
            OrgKind::Provider => "provider",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "operator" => Ok(OrgKind::Operator),
            "provider" => Ok(OrgKind::Provider),
            other => Err(DomainError::invalid(
                "kind",
                format!("unknown organisation kind '{other}'"),
            )),
        }
    }
}

/// A Swedish organisation number (organisationsnummer) of a legal entity, `NNNNNN-NNNN`.
///
/// The third digit of a legal entity's number is 2 or more; numbers below that are personal
/// identity numbers (used by sole traders), which this product must never store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrgNumber(String);

impl OrgNumber {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let digits: String = input.chars().filter(|c| *c != '-' && *c != ' ').collect();
        let digits = match digits.len() {
            12 if digits.starts_with("16") => digits[2..].to_string(),
            _ => digits,
        };
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::invalid(
                "org_number",
                format!(
                    "'{input}' is not an organisation number; expected ten digits as NNNNNN-NNNN"
                ),
            ));
        }
        if digits.as_bytes()[2] < b'2' {
            return Err(DomainError::invalid(
                "org_number",
                format!("'{input}' is a personal identity number, not a legal entity's organisation number"),
            ));
        }
        if !luhn::is_valid(&digits) {
            return Err(DomainError::invalid(
                "org_number",
                format!("'{input}' has a wrong check digit"),
            ));
        }
        Ok(OrgNumber(format!("{}-{}", &digits[..6], &digits[6..])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrgNumber {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        OrgNumber::parse(&value)
    }
}

impl From<OrgNumber> for String {
    fn from(value: OrgNumber) -> Self {
        value.0
    }
}

impl fmt::Display for OrgNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The period a provider's contract with the operator runs. The end date is the last day on
/// which the provider's people may work in the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractPeriod {
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
}

impl ContractPeriod {
    pub fn new(start: NaiveDate, end: Option<NaiveDate>) -> Result<Self, DomainError> {
        check_date("contract_start", Some(start))?;
        check_date("contract_end", end)?;
        if let Some(end) = end {
            if end < start {
                return Err(DomainError::invalid(
                    "contract_end",
                    format!("the contract cannot end ({end}) before it starts ({start})"),
                ));
            }
        }
        Ok(ContractPeriod { start, end })
    }

    /// Access is granted only while the contract runs, both ends inclusive.
    pub fn is_active_on(&self, day: NaiveDate) -> bool {
        day >= self.start && self.end.is_none_or(|end| day <= end)
    }
}

/// A name shown in lists and notices: trimmed, not empty, at most 200 characters.
pub fn parse_name(field: &'static str, input: &str) -> Result<String, DomainError> {
    let name = input.trim();
    if name.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if name.chars().count() > 200 {
        return Err(DomainError::invalid(
            field,
            "must be at most 200 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_string())
}

/// Free text such as a supplier's name: trimmed, at most `max` characters, no control
/// characters; empty means none.
pub fn optional_text(
    field: &'static str,
    input: Option<&str>,
    max: usize,
) -> Result<Option<String>, DomainError> {
    let Some(text) = input.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    check_text(field, text, max)?;
    Ok(Some(text.to_string()))
}

/// Text people or devices send: at most `max` characters and no control characters.
pub fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), DomainError> {
    if text.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn org_number_accepts_hyphenated_plain_and_century_forms() {
        for input in ["556036-0793", "5560360793", "165560360793", " 556036-0793 "] {
            assert_eq!(
                OrgNumber::parse(input).expect(input).as_str(),
                "556036-0793"
            );
        }
    }

    #[test]
    fn org_number_refuses_wrong_check_digit_length_letters_and_personal_numbers() {
        assert!(OrgNumber::parse("556036-0794").is_err());
        assert!(OrgNumber::parse("556036-079").is_err());
        assert!(OrgNumber::parse("55603A-0793").is_err());
        // 811218-9876 passes Luhn but is a personal identity number (third digit 1).
        let err = OrgNumber::parse("811218-9876").expect_err("personal number");
        assert!(err.message().contains("personal identity number"));
    }

    #[test]
    fn contract_is_active_between_start_and_end_inclusive() {
        let c = ContractPeriod::new(day("2026-01-01"), Some(day("2026-12-31"))).expect("valid");
        assert!(!c.is_active_on(day("2025-12-31")));
        assert!(c.is_active_on(day("2026-01-01")));
        assert!(c.is_active_on(day("2026-12-31")));
        assert!(!c.is_active_on(day("2027-01-01")));
        let open = ContractPeriod::new(day("2026-01-01"), None).expect("valid");
        assert!(open.is_active_on(day("2099-01-01")));
    }

    #[test]
    fn contract_cannot_end_before_it_starts() {
        assert!(ContractPeriod::new(day("2026-02-01"), Some(day("2026-01-31"))).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("name", "  Omsorg AB ").expect("ok"), "Omsorg AB");
        assert!(parse_name("name", "   ").is_err());
        assert!(parse_name("name", &"x".repeat(201)).is_err());
    }

    #[test]
    fn optional_text_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(
            optional_text("supplier", Some("  Telia "), 200),
            Ok(Some("Telia".into()))
        );
        assert_eq!(optional_text("supplier", Some("   "), 200), Ok(None));
        assert!(optional_text("supplier", Some("a\u{0}b"), 200).is_err());
        assert!(optional_text("supplier", Some(&"x".repeat(201)), 200).is_err());
    }
}
