//! E-mail addresses and mobile numbers, and the IT contacts a provider designates.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::{organisation::parse_name, DomainError};

/// An e-mail address, stored lower-case so that uniqueness ignores case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.trim();
        if trimmed.len() > 254 {
            return Err(DomainError::invalid(
                "email",
                "must be at most 254 characters",
            ));
        }
        let parsed = email_address::EmailAddress::parse_with_options(
            trimmed,
            email_address::Options::default().without_display_text(),
        )
        .map_err(|e| {
            DomainError::invalid(
                "email",
                format!("'{trimmed}' is not an e-mail address: {e}"),
            )
        })?;
        if !parsed.domain().contains('.') {
            return Err(DomainError::invalid(
                "email",
                format!("'{trimmed}' has no domain with a dot; expected name@example.se"),
            ));
        }
        Ok(Email(parsed.as_str().to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mobile number in E.164 form: `+`, a country code and the subscriber number, 8 to 15 digits
/// in all. Spaces and hyphens typed by people are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MobileNumber(String);

impl MobileNumber {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let compact: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let digits = compact.strip_prefix('+').ok_or_else(|| {
            DomainError::invalid(
                "mobile",
                format!(
                    "'{input}' must be in E.164 form with a country code, such as +46701234567"
                ),
            )
        })?;
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !ok {
            return Err(DomainError::invalid(
                "mobile",
                format!("'{input}' is not an E.164 number: '+', a country code and 8 to 15 digits in all"),
            ));
        }
        Ok(MobileNumber(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MobileNumber {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        MobileNumber::parse(&value)
    }
}

impl From<MobileNumber> for String {
    fn from(value: MobileNumber) -> Self {
        value.0
    }
}

/// A person a provider designates to receive notices and to grant its staff access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItContact {
    pub name: String,
    pub email: Email,
    pub mobile: MobileNumber,
}

/// At most this many IT contacts per provider; notices go to every one of them.
pub const MAX_IT_CONTACTS: usize = 20;

impl ItContact {
    pub fn parse(name: &str, email: &str, mobile: &str) -> Result<Self, DomainError> {
        Ok(ItContact {
            name: parse_name("it_contacts.name", name)?,
            email: Email::parse(email)?,
            mobile: MobileNumber::parse(mobile)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_lower_cased_and_needs_a_dotted_domain() {
        assert_eq!(
            Email::parse(" Anna.Berg@Omsorg.SE ").expect("ok").as_str(),
            "anna.berg@omsorg.se"
        );
        assert!(Email::parse("anna@localhost").is_err());
        assert!(Email::parse("not an address").is_err());
        assert!(Email::parse("Anna <anna@omsorg.se>").is_err());
    }

    #[test]
    fn mobile_number_must_be_e164() {
        assert_eq!(
            MobileNumber::parse("+46 70-123 45 67")
                .expect("ok")
                .as_str(),
            "+46701234567"
        );
        assert!(MobileNumber::parse("070-123 45 67").is_err());
        assert!(MobileNumber::parse("+0701234567").is_err());
        assert!(MobileNumber::parse("+4670123456789012").is_err());
        assert!(MobileNumber::parse("+46abc").is_err());
    }
}
