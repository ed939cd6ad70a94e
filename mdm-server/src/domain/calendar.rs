//! Calendar rules for the dates people enter.

use chrono::{Datelike, NaiveDate};

use super::DomainError;

/// Dates in this product (contracts, purchases, warranties, recommendations) lie between these
/// years; anything outside is a typing mistake, and some databases cannot store it.
pub const FIRST_YEAR: i32 = 1900;
pub const LAST_YEAR: i32 = 9999;

pub fn check_date(field: &'static str, date: Option<NaiveDate>) -> Result<(), DomainError> {
    match date {
        Some(d) if !(FIRST_YEAR..=LAST_YEAR).contains(&d.year()) => Err(DomainError::invalid(
            field,
            format!(
                "{d} is not a plausible date; expected a year from {FIRST_YEAR} to {LAST_YEAR}"
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_outside_the_plausible_years_are_refused() {
        let d = |s: &str| Some(s.parse::<NaiveDate>().expect("date"));
        assert!(check_date("purchase_date", d("2026-01-15")).is_ok());
        assert!(check_date("purchase_date", None).is_ok());
        assert!(check_date("purchase_date", d("1899-12-31")).is_err());
        assert!(check_date("purchase_date", NaiveDate::from_ymd_opt(-10000, 1, 1)).is_err());
    }
}
