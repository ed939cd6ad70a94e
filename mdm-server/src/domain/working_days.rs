//! Swedish working days, for the deadlines in the contracts ("a phone handed in for
//! configuration is ready within 3 working days"): Monday to Friday, except the public holidays
//! of the Public Holidays Act (lagen om allmänna helgdagar, SFS 1989:253) and the days kept as
//! holidays in practice (Midsummer Eve, Christmas Eve, New Year's Eve). Support hours decide
//! whether something handed in after closing counts from the next working day.
//!
//! Easter comes from the `computus` crate. The dozen other rules are written here: the one crate
//! with Swedish holidays (`holidays_se`) brings a second, old copy of the time-zone database and
//! chrono's deprecated `Date` type, and knows nothing of shortened days before a holiday.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// The working days the contracts give municipal IT to configure a handed-in phone.
pub const CONFIGURATION_WORKING_DAYS: u32 = 3;

/// Easter Sunday in the Gregorian calendar.
pub fn easter(year: i32) -> Option<NaiveDate> {
    computus::gregorian_naive(year).ok()
}

/// The first `weekday` on or after `from`.
fn first_on_or_after(from: NaiveDate, weekday: Weekday) -> NaiveDate {
    let ahead = (7 + weekday.num_days_from_monday() - from.weekday().num_days_from_monday()) % 7;
    from + Duration::days(i64::from(ahead))
}

/// The name of the holiday on `date`, if it is one: a public holiday or a day kept as one.
pub fn holiday(date: NaiveDate) -> Option<&'static str> {
    let year = date.year();
    let fixed = match (date.month(), date.day()) {
        (1, 1) => Some("Nyårsdagen"),
        (1, 6) => Some("Trettondedag jul"),
        (5, 1) => Some("Första maj"),
        (6, 6) => Some("Sveriges nationaldag"),
        (12, 24) => Some("Julafton"),
        (12, 25) => Some("Juldagen"),
        (12, 26) => Some("Annandag jul"),
        (12, 31) => Some("Nyårsafton"),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let ymd = |m, d| NaiveDate::from_ymd_opt(year, m, d);
    // Midsummer Day is the Saturday from 20 to 26 June, and its eve the Friday before; All
    // Saints' Day is the Saturday from 31 October to 6 November.
    if let Some(midsummer) = ymd(6, 20).map(|d| first_on_or_after(d, Weekday::Sat)) {
        if date == midsummer {
            return Some("Midsommardagen");
        }
        if date + Duration::days(1) == midsummer {
            return Some("Midsommarafton");
        }
    }
    if ymd(10, 31).map(|d| first_on_or_after(d, Weekday::Sat)) == Some(date) {
        return Some("Alla helgons dag");
    }
    let easter = easter(year)?;
    match (date - easter).num_days() {
        -2 => Some("Långfredagen"),
        0 => Some("Påskdagen"),
        1 => Some("Annandag påsk"),
        39 => Some("Kristi himmelsfärdsdag"),
        49 => Some("Pingstdagen"),
        _ => None,
    }
}

pub fn is_working_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && holiday(date).is_none()
}

/// The working day after `date`.
pub fn next_working_day(date: NaiveDate) -> NaiveDate {
    let mut day = date + Duration::days(1);
    while !is_working_day(day) {
        day += Duration::days(1);
    }
    day
}

/// When municipal IT's support answers: weekdays 07:00 to 16:00, and 07:00 to 13:00 on a
/// working day before a holiday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportHours {
    pub opens: NaiveTime,
    pub closes: NaiveTime,
    pub closes_before_holiday: NaiveTime,
}

impl Default for SupportHours {
    fn default() -> Self {
        let at = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN);
        SupportHours {
            opens: at(7),
            closes: at(16),
            closes_before_holiday: at(13),
        }
    }
}

impl SupportHours {
    /// When support closes on `date`; `None` on a day that is not a working day.
    pub fn closing(&self, date: NaiveDate) -> Option<NaiveTime> {
        if !is_working_day(date) {
            return None;
        }
        Some(if holiday(date + Duration::days(1)).is_some() {
            self.closes_before_holiday
        } else {
            self.closes
        })
    }
}

/// The local time `time` on `date` as an instant (the earlier one if the clock is set back
/// then; the hour after if it springs forward over it).
fn instant(date: NaiveDate, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let local = date.and_time(time);
    tz.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(local + Duration::hours(1)))
                .earliest()
        })
        .map_or_else(|| local.and_utc(), |t| t.with_timezone(&Utc))
}

/// When something handed in at `received` is due, `working_days` working days later: at closing
/// time of the last of them. A hand-in on a working day before closing counts from that day; one
/// after closing, or on a day off, from the next working day.
pub fn deadline(
    received: DateTime<Utc>,
    working_days: u32,
    hours: &SupportHours,
    tz: Tz,
) -> DateTime<Utc> {
    let local = received.with_timezone(&tz);
    let mut day = local.date_naive();
    let in_time = hours
        .closing(day)
        .is_some_and(|closes| local.time() < closes);
    if !in_time {
        day = next_working_day(day);
    }
    for _ in 0..working_days {
        day = next_working_day(day);
    }
    let closes = hours.closing(day).unwrap_or(hours.closes);
    instant(day, closes, tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Stockholm;

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn local(s: &str) -> DateTime<Utc> {
        let naive: chrono::NaiveDateTime = s.parse().expect("local time");
        Stockholm
            .from_local_datetime(&naive)
            .single()
            .expect("unambiguous")
            .with_timezone(&Utc)
    }

    #[test]
    fn easter_and_the_holidays_that_follow_it_are_right_for_early_and_late_years() {
        for (year, easter_sunday) in [
            (2026, "2026-04-05"),
            (2027, "2027-03-28"),
            (2038, "2038-04-25"),
            (2285, "2285-03-22"),
        ] {
            assert_eq!(easter(year), Some(date(easter_sunday)), "{year}");
        }
        assert_eq!(holiday(date("2026-04-03")), Some("Långfredagen"));
        assert_eq!(holiday(date("2026-04-06")), Some("Annandag påsk"));
        assert_eq!(holiday(date("2026-05-14")), Some("Kristi himmelsfärdsdag"));
        assert_eq!(holiday(date("2026-05-24")), Some("Pingstdagen"));
        // Whit Monday has not been a holiday since 2005.
        assert_eq!(holiday(date("2026-05-25")), None);
    }

    #[test]
    fn midsummer_all_saints_and_the_fixed_days_fall_where_the_law_puts_them() {
        assert_eq!(holiday(date("2026-06-19")), Some("Midsommarafton"));
        assert_eq!(holiday(date("2026-06-20")), Some("Midsommardagen"));
        assert_eq!(holiday(date("2027-06-25")), Some("Midsommarafton"));
        assert_eq!(holiday(date("2026-10-31")), Some("Alla helgons dag"));
        assert_eq!(holiday(date("2027-11-06")), Some("Alla helgons dag"));
        assert_eq!(holiday(date("2026-06-06")), Some("Sveriges nationaldag"));
        assert_eq!(holiday(date("2026-12-24")), Some("Julafton"));
        assert_eq!(holiday(date("2026-12-31")), Some("Nyårsafton"));
        assert_eq!(holiday(date("2026-11-23")), None);
        assert!(is_working_day(date("2026-11-23")));
        assert!(!is_working_day(date("2026-11-28")), "a Saturday");
        assert!(!is_working_day(date("2026-06-19")), "Midsummer Eve");
    }

    #[test]
    fn three_working_days_count_from_the_hand_in_day_only_before_closing() {
        let hours = SupportHours::default();
        let due = |at: &str| deadline(local(at), 3, &hours, Stockholm);
        // Monday morning: due Thursday at closing.
        assert_eq!(due("2026-11-23T10:00:00"), local("2026-11-26T16:00:00"));
        // Monday after closing: counts from Tuesday, due Friday.
        assert_eq!(due("2026-11-23T16:30:00"), local("2026-11-27T16:00:00"));
        // Saturday: counts from Monday.
        assert_eq!(due("2026-11-28T12:00:00"), local("2026-12-03T16:00:00"));
    }

    #[test]
    fn holidays_are_skipped_and_days_before_them_close_at_one() {
        let hours = SupportHours::default();
        let due = |at: &str| deadline(local(at), 3, &hours, Stockholm);
        // Maundy Thursday closes at 13:00: at noon it counts; Good Friday and Easter Monday do
        // not, so the third working day is Thursday 9 April.
        assert_eq!(due("2026-04-02T12:00:00"), local("2026-04-09T16:00:00"));
        // At 14:00 it is after the early closing: counting starts on Tuesday 7 April.
        assert_eq!(due("2026-04-02T14:00:00"), local("2026-04-10T16:00:00"));
        // The day before Christmas Eve closes at 13:00, so a hand-in at 14:00 counts from Monday
        // 28 December; then Tuesday 29, Wednesday 30 and, after New Year, Monday 4 January.
        assert_eq!(due("2026-12-23T14:00:00"), local("2027-01-04T16:00:00"));
        // In before the early closing on 23 December: due on the day before New Year's Eve, at
        // its early closing.
        assert_eq!(due("2026-12-23T10:00:00"), local("2026-12-30T13:00:00"));
        assert_eq!(
            hours.closing(date("2026-06-18")),
            Some(NaiveTime::from_hms_opt(13, 0, 0).expect("time")),
            "the day before Midsummer Eve"
        );
        assert_eq!(hours.closing(date("2026-06-19")), None);
    }

    #[test]
    fn deadlines_across_easter_midsummer_and_christmas_hold_in_2027_2028_and_2029() {
        let hours = SupportHours::default();
        let due = |at: &str| deadline(local(at), 3, &hours, Stockholm);
        // Easter 2027 (Sunday 28 March): in before Maundy Thursday's early closing.
        assert_eq!(due("2027-03-25T10:00:00"), local("2027-04-01T16:00:00"));
        // Easter 2028 (Sunday 16 April): Wednesday, Maundy Thursday, then Easter Monday skipped.
        assert_eq!(due("2028-04-12T15:00:00"), local("2028-04-19T16:00:00"));
        // Easter 2029 (Sunday 1 April): after Maundy Thursday's 13:00 closing, counting starts on
        // the Tuesday after Easter Monday.
        assert_eq!(due("2029-03-29T13:30:00"), local("2029-04-06T16:00:00"));
        // Midsummer 2027 (Eve Friday 25 June): the Thursday before closes at 13:00 and counts.
        assert_eq!(due("2027-06-23T10:00:00"), local("2027-06-29T16:00:00"));
        // Midsummer 2028 (Eve Friday 23 June): after Thursday's early closing.
        assert_eq!(due("2028-06-22T14:00:00"), local("2028-06-29T16:00:00"));
        // Midsummer 2029 (Eve Friday 22 June): due on the Thursday before, at its early closing.
        assert_eq!(due("2029-06-18T09:00:00"), local("2029-06-21T13:00:00"));
        // Christmas 2027 (Eve on a Friday).
        assert_eq!(due("2027-12-22T12:00:00"), local("2027-12-28T16:00:00"));
        // Christmas 2028 (Eve on a Sunday): Christmas Day and Boxing Day fall on weekdays.
        assert_eq!(due("2028-12-22T14:00:00"), local("2028-12-29T16:00:00"));
        // Christmas 2029 (Eve on a Monday): across New Year's Eve and New Year's Day.
        assert_eq!(due("2029-12-21T12:00:00"), local("2030-01-02T16:00:00"));
    }
}
