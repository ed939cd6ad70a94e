//! Phone requests: a provider asks for phones; municipal IT fulfils them by leasing phones, within
//! the configuration deadline counted in Swedish working days from the request.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::calendar::check_date;
use super::organisation::check_text;
use super::working_days::{deadline, SupportHours};
use super::{DomainError, Refusal};

/// The most phones one request may ask for.
pub const MAX_QUANTITY: u32 = 500;
const MAX_NOTE_CHARS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Open,
    Fulfilled,
    Cancelled,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Open => "open",
            RequestState::Fulfilled => "fulfilled",
            RequestState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "open" => Ok(RequestState::Open),
            "fulfilled" => Ok(RequestState::Fulfilled),
            "cancelled" => Ok(RequestState::Cancelled),
            other => Err(DomainError::invalid(
                "state",
                format!("'{other}' is not a request state; expected open, fulfilled or cancelled"),
            )),
        }
    }
}

/// Checks what a provider asks for, on `today`.
pub fn check_request(
    quantity: u32,
    needed_by: Option<NaiveDate>,
    delivery_note: &str,
    today: NaiveDate,
) -> Result<(), DomainError> {
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(DomainError::invalid(
            "quantity",
            format!("ask for 1 to {MAX_QUANTITY} phones"),
        ));
    }
    check_date("needed_by", needed_by)?;
    if needed_by.is_some_and(|d| d < today) {
        return Err(DomainError::invalid(
            "needed_by",
            "the date the phones are needed by has passed",
        ));
    }
    if !delivery_note.is_empty() {
        check_text("delivery_note", delivery_note, MAX_NOTE_CHARS)?;
    }
    Ok(())
}

/// When the phones must be ready: the configuration deadline in working days from the request,
/// counted from the next working day when it came in after support closed.
pub fn due_at(
    requested_at: DateTime<Utc>,
    working_days: u32,
    hours: &SupportHours,
    tz: Tz,
) -> DateTime<Utc> {
    deadline(requested_at, working_days, hours, tz)
}

/// One more phone leased against the request: the new count and whether it is now fulfilled.
pub fn fulfil_one(
    state: RequestState,
    fulfilled: u32,
    quantity: u32,
) -> Result<(u32, RequestState), Refusal> {
    if state != RequestState::Open {
        return Err(Refusal::new(
            "request-closed",
            format!(
                "the request is {}: open a new request for more phones",
                state.as_str()
            ),
        ));
    }
    let now = fulfilled + 1;
    Ok((
        now,
        if now >= quantity {
            RequestState::Fulfilled
        } else {
            RequestState::Open
        },
    ))
}

/// Only an open request can be cancelled.
pub fn cancel(state: RequestState) -> Result<RequestState, Refusal> {
    match state {
        RequestState::Open => Ok(RequestState::Cancelled),
        other => Err(Refusal::new(
            "request-closed",
            format!("the request is {} already", other.as_str()),
        )),
    }
}

/// Whether an open request has passed its deadline at `now`.
pub fn is_overdue(state: RequestState, due_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    state == RequestState::Open && now > due_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Stockholm;

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn a_request_needs_a_sensible_quantity_and_a_future_date() {
        let today = day("2026-11-23");
        assert!(check_request(3, Some(day("2026-12-01")), "Till receptionen", today).is_ok());
        assert_eq!(
            check_request(0, None, "", today).expect_err("none").field(),
            "quantity"
        );
        assert_eq!(
            check_request(501, None, "", today)
                .expect_err("many")
                .field(),
            "quantity"
        );
        assert_eq!(
            check_request(1, Some(day("2026-11-22")), "", today)
                .expect_err("past")
                .field(),
            "needed_by"
        );
    }

    #[test]
    fn partial_fulfilment_keeps_the_request_open_until_the_last_phone() {
        assert_eq!(
            fulfil_one(RequestState::Open, 0, 2),
            Ok((1, RequestState::Open))
        );
        assert_eq!(
            fulfil_one(RequestState::Open, 1, 2),
            Ok((2, RequestState::Fulfilled))
        );
        assert_eq!(
            fulfil_one(RequestState::Fulfilled, 2, 2)
                .expect_err("closed")
                .kind,
            "request-closed"
        );
        assert_eq!(cancel(RequestState::Open), Ok(RequestState::Cancelled));
        assert!(cancel(RequestState::Cancelled).is_err());
    }

    #[test]
    fn a_request_is_due_three_working_days_later_and_overdue_after_that() {
        let at = |s: &str| -> DateTime<Utc> { s.parse().expect("time") };
        // Friday 20 November 2026, 10:00 in Stockholm: due Wednesday 25th at 16:00.
        let due = due_at(
            at("2026-11-20T09:00:00Z"),
            3,
            &SupportHours::default(),
            Stockholm,
        );
        assert_eq!(due, at("2026-11-25T15:00:00Z"));
        assert!(!is_overdue(RequestState::Open, due, due));
        assert!(is_overdue(
            RequestState::Open,
            due,
            at("2026-11-25T15:00:01Z")
        ));
        assert!(!is_overdue(
            RequestState::Fulfilled,
            due,
            at("2026-12-25T00:00:00Z")
        ));
    }
}
