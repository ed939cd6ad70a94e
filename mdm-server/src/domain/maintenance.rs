//! Planned maintenance and unplanned disruptions: the operator's notice policy, when a window
//! may be announced, recurring windows, a window's status, and which notices go out when.
//!
//! Times are kept in UTC and entered and shown in the operator's time zone; a local wall-clock
//! time stays what it is across the daylight-saving changes.

use chrono::{DateTime, Duration, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

use super::DomainError;

/// Longest title and description of a window.
pub const MAX_TITLE: usize = 200;
pub const MAX_DESCRIPTION: usize = 4000;
/// At most this many affected systems are named per window.
pub const MAX_SYSTEMS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// The language notices are written in: Swedish unless the operator chooses English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    Sv,
    En,
}

/// Part of the week when maintenance preferably happens, in local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferredWindow {
    /// Three-letter English day names: `mon` … `sun`.
    #[serde(with = "weekdays")]
    pub days: Vec<Weekday>,
    /// `HH:MM`, local time.
    #[serde(with = "hh_mm")]
    pub from: NaiveTime,
    #[serde(with = "hh_mm")]
    pub until: NaiveTime,
}

impl PreferredWindow {
    /// Whether a window from `start` to `end` (local) lies inside this part of the week.
    fn contains(&self, start: NaiveDateTime, end: NaiveDateTime) -> bool {
        use chrono::Datelike;
        start.date() == end.date()
            && self.days.contains(&start.weekday())
            && start.time() >= self.from
            && end.time() <= self.until
    }
}

/// How the operator announces maintenance. The contracts differ between cities (7 or 10 days'
/// notice, weekday or Sunday windows), so every part is configurable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticePolicy {
    /// A planned window must be announced at least this many days before it starts.
    pub min_lead_days: u32,
    /// Windows preferably lie in one of these; others need an explicit acknowledgement.
    pub preferred_windows: Vec<PreferredWindow>,
    /// The reminder goes out this many hours before the start.
    pub reminder_hours: u32,
    /// How planned maintenance is announced. Unplanned disruptions always go by e-mail and
    /// SMS (the contracts say so), and to the webhook when it is in this list.
    pub channels: Vec<Channel>,
    pub language: Language,
    /// While a disruption is open, a follow-up goes out this often.
    pub disruption_follow_up_minutes: u32,
}

impl Default for NoticePolicy {
    /// The first city's contract: 7 days' notice, Tuesday to Thursday 10:00–13:00.
    fn default() -> Self {
        NoticePolicy {
            min_lead_days: 7,
            preferred_windows: vec![PreferredWindow {
                days: vec![Weekday::Tue, Weekday::Wed, Weekday::Thu],
                from: NaiveTime::from_hms_opt(10, 0, 0).unwrap_or_default(),
                until: NaiveTime::from_hms_opt(13, 0, 0).unwrap_or_default(),
            }],
            reminder_hours: 24,
            channels: vec![Channel::Email],
            language: Language::Sv,
            disruption_follow_up_minutes: 120,
        }
    }
}

impl NoticePolicy {
    /// Checks every value; the first wrong one is named.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.min_lead_days > 90 {
            return Err(DomainError::invalid(
                "min_lead_days",
                "must be from 0 to 90 days",
            ));
        }
        if !(1..=336).contains(&self.reminder_hours) {
            return Err(DomainError::invalid(
                "reminder_hours",
                "must be from 1 to 336 hours",
            ));
        }
        if !(15..=1440).contains(&self.disruption_follow_up_minutes) {
            return Err(DomainError::invalid(
                "disruption_follow_up_minutes",
                "must be from 15 to 1440 minutes",
            ));
        }
        if self.channels.is_empty() {
            return Err(DomainError::invalid(
                "channels",
                "name at least one of email, sms, webhook",
            ));
        }
        if self.preferred_windows.len() > 14 {
            return Err(DomainError::invalid(
                "preferred_windows",
                "at most 14 preferred windows",
            ));
        }
        for w in &self.preferred_windows {
            if w.days.is_empty() {
                return Err(DomainError::invalid(
                    "preferred_windows.days",
                    "name at least one day",
                ));
            }
            if w.from >= w.until {
                return Err(DomainError::invalid(
                    "preferred_windows.until",
                    "must be later than 'from' on the same day",
                ));
            }
        }
        Ok(())
    }

    /// The earliest start that can be announced at `now`: the same local time `min_lead_days`
    /// calendar days later (168 hours for 7 days, except across a DST change, where it is
    /// 167 or 169).
    pub fn earliest_start(&self, tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
        shift_local_days(tz, now, i64::from(self.min_lead_days))
    }

    /// When a window starting at `start` is announced: the same local time `min_lead_days`
    /// calendar days before.
    pub fn announce_at(&self, tz: Tz, start: DateTime<Utc>) -> DateTime<Utc> {
        shift_local_days(tz, start, -i64::from(self.min_lead_days))
    }

    /// Whether a window (local times) lies in a preferred window; no preferred windows means
    /// every time is preferred.
    pub fn is_preferred(&self, start: NaiveDateTime, end: NaiveDateTime) -> bool {
        self.preferred_windows.is_empty()
            || self
                .preferred_windows
                .iter()
                .any(|w| w.contains(start, end))
    }

    /// The channels for a notice about a window of this kind.
    pub fn channels_for(&self, kind: WindowKind) -> Vec<Channel> {
        match kind {
            WindowKind::Planned => self.channels.clone(),
            WindowKind::Disruption => {
                let mut channels = vec![Channel::Email, Channel::Sms];
                if self.channels.contains(&Channel::Webhook) {
                    channels.push(Channel::Webhook);
                }
                channels
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Planned,
    Disruption,
}

impl WindowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Planned => "planned",
            WindowKind::Disruption => "disruption",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "planned" => Some(WindowKind::Planned),
            "disruption" => Some(WindowKind::Disruption),
            _ => None,
        }
    }
}

/// Why a planned window cannot be scheduled as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowRefusal {
    Invalid(DomainError),
    /// It starts sooner than the notice policy allows; `earliest` is the first start that would
    /// be accepted now.
    TooLate {
        earliest: DateTime<Utc>,
        lead_days: u32,
    },
    /// It lies outside the preferred windows and the request did not acknowledge that.
    OutsidePreferred,
}

impl From<DomainError> for WindowRefusal {
    fn from(e: DomainError) -> Self {
        WindowRefusal::Invalid(e)
    }
}

/// Whether a planned window from `start` to `end` may be announced at `now`. Returns whether it
/// lies outside the preferred windows (allowed only when `outside_acknowledged`).
pub fn check_planned(
    policy: &NoticePolicy,
    tz: Tz,
    now: DateTime<Utc>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    outside_acknowledged: bool,
) -> Result<bool, WindowRefusal> {
    if end <= start {
        return Err(DomainError::invalid("ends_at", "must be later than starts_at").into());
    }
    if end - start > Duration::days(14) {
        return Err(DomainError::invalid(
            "ends_at",
            "a maintenance window lasts at most 14 days; split longer work into several windows",
        )
        .into());
    }
    if start <= now {
        return Err(DomainError::invalid("starts_at", "lies in the past").into());
    }
    let earliest = policy.earliest_start(tz, now);
    if start < earliest {
        return Err(WindowRefusal::TooLate {
            earliest,
            lead_days: policy.min_lead_days,
        });
    }
    let preferred = policy.is_preferred(
        start.with_timezone(&tz).naive_local(),
        end.with_timezone(&tz).naive_local(),
    );
    if !preferred && !outside_acknowledged {
        return Err(WindowRefusal::OutsidePreferred);
    }
    Ok(!preferred)
}

/// The same local wall-clock time `days` calendar days away. Where that time does not exist
/// (the hour skipped in March) it is the same number of hours away instead.
fn shift_local_days(tz: Tz, t: DateTime<Utc>, days: i64) -> DateTime<Utc> {
    let local = t.with_timezone(&tz).naive_local() + Duration::days(days);
    tz.from_local_datetime(&local)
        .earliest()
        .map_or(t + Duration::days(days), |l| l.with_timezone(&Utc))
}

/// A time as people type it: RFC 3339 with an offset, or a local time (`2026-12-01T10:00`)
/// read in the operator's time zone. A local time that does not exist (the hour skipped when
/// summer time begins) is refused; one that occurs twice (the hour repeated in October) means
/// the first of the two.
pub fn parse_time(field: &'static str, input: &str, tz: Tz) -> Result<DateTime<Utc>, DomainError> {
    let input = input.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(input) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(input, f).ok())
        .ok_or_else(|| {
            DomainError::invalid(
                field,
                format!("'{input}' is not a time; expected 2026-12-01T10:00 (local) or RFC 3339"),
            )
        })?;
    local_to_utc(field, naive, tz)
}

/// A local wall-clock time in `tz` as UTC (see [`parse_time`] for the DST cases).
pub fn local_to_utc(
    field: &'static str,
    naive: NaiveDateTime,
    tz: Tz,
) -> Result<DateTime<Utc>, DomainError> {
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            DomainError::invalid(
                field,
                format!("{naive} does not exist in {tz} (the clocks skip that hour)"),
            )
        })
}

/// A recurring window: a cron expression for the start (local time) and a length.
#[derive(Debug, Clone)]
pub struct Recurrence {
    schedule: cron::Schedule,
    /// As the user entered it.
    pub expression: String,
    pub duration: Duration,
}

/// Occurrences this close together are not maintenance windows but a typing mistake.
const MIN_RECURRENCE_GAP_HOURS: i64 = 24;

impl Recurrence {
    /// Parses the usual 5-field cron form (`minute hour day-of-month month day-of-week`, days
    /// of the week 0–7 with 0 and 7 both Sunday, or `mon`…`sun`). Both day fields must match, so
    /// `0 10 1-7 * 2` is the first Tuesday of every month at 10:00.
    pub fn parse(expression: &str, duration_minutes: u32) -> Result<Self, DomainError> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(DomainError::invalid(
                "cron",
                format!(
                    "'{expression}' has {} fields; expected 5: minute hour day-of-month month day-of-week",
                    fields.len()
                ),
            ));
        }
        if !(1..=14 * 24 * 60).contains(&duration_minutes) {
            return Err(DomainError::invalid(
                "duration_minutes",
                "must be from 1 minute to 14 days",
            ));
        }
        let dow = day_of_week_names(fields[4])?;
        // The cron crate wants seconds first; its days of the week count from Sunday = 1, so the
        // user's numbers become names.
        let full = format!(
            "0 {} {} {} {} {dow}",
            fields[0], fields[1], fields[2], fields[3]
        );
        let schedule = cron::Schedule::from_str(&full).map_err(|e| {
            DomainError::invalid("cron", format!("'{expression}' does not parse: {e}"))
        })?;
        Ok(Recurrence {
            schedule,
            expression: fields.join(" "),
            duration: Duration::minutes(i64::from(duration_minutes)),
        })
    }

    /// The first occurrence (start, end) starting at or after `after`, in `tz`. The end is the
    /// start's local wall-clock time plus the length, so a window keeps its local hours across
    /// a DST change.
    pub fn next_after(
        &self,
        tz: Tz,
        after: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let from = (after - Duration::seconds(1)).with_timezone(&tz);
        let start = self.schedule.after(&from).next()?;
        let end_local = start.naive_local() + self.duration;
        let end = tz
            .from_local_datetime(&end_local)
            .earliest()
            .map_or(start.with_timezone(&Utc) + self.duration, |t| {
                t.with_timezone(&Utc)
            });
        Some((start.with_timezone(&Utc), end))
    }

    /// Checks that the expression fires, not too often, and returns the first occurrence that
    /// can still be announced in time at `now`.
    pub fn first_announceable(
        &self,
        policy: &NoticePolicy,
        tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), DomainError> {
        let never = || DomainError::invalid("cron", format!("'{}' never fires", self.expression));
        let first = self
            .next_after(tz, policy.earliest_start(tz, now))
            .ok_or_else(never)?;
        if let Some(second) = self.next_after(tz, first.0 + Duration::seconds(1)) {
            if second.0 - first.0 < Duration::hours(MIN_RECURRENCE_GAP_HOURS) {
                return Err(DomainError::invalid(
                    "cron",
                    format!(
                        "'{}' fires more than once a day; a recurring window may occur at most daily",
                        self.expression
                    ),
                ));
            }
            if second.0 < first.1 {
                return Err(DomainError::invalid(
                    "duration_minutes",
                    "occurrences would overlap; shorten the window",
                ));
            }
        }
        Ok(first)
    }

    /// Whether the first `n` occurrences from `from` all lie in the preferred windows.
    pub fn all_preferred(
        &self,
        policy: &NoticePolicy,
        tz: Tz,
        from: DateTime<Utc>,
        n: usize,
    ) -> bool {
        let mut at = from;
        for _ in 0..n {
            let Some((start, end)) = self.next_after(tz, at) else {
                break;
            };
            if !policy.is_preferred(
                start.with_timezone(&tz).naive_local(),
                end.with_timezone(&tz).naive_local(),
            ) {
                return false;
            }
            at = start + Duration::seconds(1);
        }
        true
    }
}

/// A day-of-week field with the user's numbers (0–7, Sunday = 0 or 7) turned into names.
fn day_of_week_names(field: &str) -> Result<String, DomainError> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let mut out = String::with_capacity(field.len() * 2);
    let mut number = String::new();
    let mut after_slash = false;
    let flush = |number: &mut String, out: &mut String, after_slash: bool| {
        if number.is_empty() {
            return Ok(());
        }
        if after_slash {
            out.push_str(number);
        } else {
            let n: usize = number.parse().unwrap_or(99);
            let name = NAMES.get(n).ok_or_else(|| {
                DomainError::invalid(
                    "cron",
                    format!("day of the week {number} is not 0-7 (0 and 7 are Sunday)"),
                )
            })?;
            out.push_str(name);
        }
        number.clear();
        Ok::<(), DomainError>(())
    };
    for c in field.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        flush(&mut number, &mut out, after_slash)?;
        after_slash = c == '/';
        out.push(c);
    }
    flush(&mut number, &mut out, after_slash)?;
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowStatus {
    Scheduled,
    Rescheduled,
    InProgress,
    Completed,
    Cancelled,
}

impl WindowStatus {
    pub const ALL: [WindowStatus; 5] = [
        WindowStatus::Scheduled,
        WindowStatus::Rescheduled,
        WindowStatus::InProgress,
        WindowStatus::Completed,
        WindowStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WindowStatus::Scheduled => "scheduled",
            WindowStatus::Rescheduled => "rescheduled",
            WindowStatus::InProgress => "in_progress",
            WindowStatus::Completed => "completed",
            WindowStatus::Cancelled => "cancelled",
        }
    }
}

/// What is known of a window for working out its status.
#[derive(Debug, Clone, Copy)]
pub struct WindowTimes {
    pub starts_at: DateTime<Utc>,
    /// Open-ended while a disruption lasts.
    pub ends_at: Option<DateTime<Utc>>,
    pub rescheduled: bool,
    pub cancelled: bool,
}

impl WindowTimes {
    pub fn status_at(&self, now: DateTime<Utc>) -> WindowStatus {
        if self.cancelled {
            WindowStatus::Cancelled
        } else if self.ends_at.is_some_and(|end| now >= end) {
            WindowStatus::Completed
        } else if now >= self.starts_at {
            WindowStatus::InProgress
        } else if self.rescheduled {
            WindowStatus::Rescheduled
        } else {
            WindowStatus::Scheduled
        }
    }

    /// Whether phones should show it: in progress, or starting within `horizon`.
    pub fn shown_to_devices(&self, now: DateTime<Utc>, horizon: Duration) -> bool {
        match self.status_at(now) {
            WindowStatus::InProgress => true,
            WindowStatus::Scheduled | WindowStatus::Rescheduled => self.starts_at - now <= horizon,
            WindowStatus::Completed | WindowStatus::Cancelled => false,
        }
    }
}

/// The notices the product sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Announced,
    Reminder,
    Started,
    Ended,
    Rescheduled,
    Cancelled,
    DisruptionOpened,
    DisruptionUpdate,
    DisruptionFollowUp,
    DisruptionResolved,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 10] = [
        NoticeKind::Announced,
        NoticeKind::Reminder,
        NoticeKind::Started,
        NoticeKind::Ended,
        NoticeKind::Rescheduled,
        NoticeKind::Cancelled,
        NoticeKind::DisruptionOpened,
        NoticeKind::DisruptionUpdate,
        NoticeKind::DisruptionFollowUp,
        NoticeKind::DisruptionResolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Announced => "announced",
            NoticeKind::Reminder => "reminder",
            NoticeKind::Started => "started",
            NoticeKind::Ended => "ended",
            NoticeKind::Rescheduled => "rescheduled",
            NoticeKind::Cancelled => "cancelled",
            NoticeKind::DisruptionOpened => "disruption_opened",
            NoticeKind::DisruptionUpdate => "disruption_update",
            NoticeKind::DisruptionFollowUp => "disruption_follow_up",
            NoticeKind::DisruptionResolved => "disruption_resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Notices that belong to a window's timetable and are dropped when it moves or ends.
    pub fn is_timetabled(self) -> bool {
        matches!(
            self,
            NoticeKind::Reminder
                | NoticeKind::Started
                | NoticeKind::Ended
                | NoticeKind::DisruptionFollowUp
        )
    }
}

/// The timetabled notices of a planned window announced at `now`: the reminder (when it still
/// lies ahead), the start and the end.
pub fn timetable(
    policy: &NoticePolicy,
    now: DateTime<Utc>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Vec<(NoticeKind, DateTime<Utc>)> {
    let mut out = Vec::with_capacity(3);
    let reminder = starts_at - Duration::hours(i64::from(policy.reminder_hours));
    if reminder > now {
        out.push((NoticeKind::Reminder, reminder));
    }
    out.push((NoticeKind::Started, starts_at));
    out.push((NoticeKind::Ended, ends_at));
    out
}

/// Checks a window's title, description and affected systems.
pub fn check_text(title: &str, description: &str, systems: &[String]) -> Result<(), DomainError> {
    if title.trim().is_empty() || title.chars().count() > MAX_TITLE {
        return Err(DomainError::invalid(
            "title",
            format!("must be 1 to {MAX_TITLE} characters"),
        ));
    }
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(DomainError::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if systems.len() > MAX_SYSTEMS
        || systems
            .iter()
            .any(|s| s.trim().is_empty() || s.chars().count() > 100)
    {
        return Err(DomainError::invalid(
            "systems",
            format!("name at most {MAX_SYSTEMS} systems of 1 to 100 characters each"),
        ));
    }
    Ok(())
}

mod weekdays {
    use chrono::Weekday;
    use serde::{Deserialize, Deserializer, Serializer};

    const NAMES: [(&str, Weekday); 7] = [
        ("mon", Weekday::Mon),
        ("tue", Weekday::Tue),
        ("wed", Weekday::Wed),
        ("thu", Weekday::Thu),
        ("fri", Weekday::Fri),
        ("sat", Weekday::Sat),
        ("sun", Weekday::Sun),
    ];

    pub fn serialize<S: Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            days.iter()
                .filter_map(|d| NAMES.iter().find(|(_, w)| w == d).map(|(n, _)| *n)),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|name| {
                NAMES
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
                    .map(|(_, w)| *w)
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "'{name}' is not a day; expected mon, tue, wed, thu, fri, sat or sun"
                        ))
                    })
            })
            .collect()
    }
}

mod hh_mm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%H:%M").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(d)?;
        NaiveTime::parse_from_str(text.trim(), "%H:%M").map_err(|_| {
            serde::de::Error::custom(format!("'{text}' is not a time of day; expected HH:MM"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Stockholm;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn local(s: &str) -> DateTime<Utc> {
        parse_time("t", s, Stockholm).expect("local time")
    }

    #[test]
    fn a_window_announced_an_hour_short_of_the_lead_time_is_too_late() {
        let policy = NoticePolicy::default();
        let now = local("2026-12-01T10:00");
        let start = now + Duration::days(7) - Duration::hours(1);
        let err = check_planned(
            &policy,
            Stockholm,
            now,
            start,
            start + Duration::hours(2),
            true,
        )
        .expect_err("too late");
        assert!(matches!(err, WindowRefusal::TooLate { lead_days: 7, .. }));
        let start = now + Duration::days(7);
        assert!(check_planned(
            &policy,
            Stockholm,
            now,
            start,
            start + Duration::hours(2),
            false
        )
        .is_ok());
    }

    #[test]
    fn the_lead_time_counts_calendar_days_across_the_march_change() {
        let policy = NoticePolicy::default();
        // Tuesday 23 March 2027 10:00 (winter time) to Tuesday 30 March 10:00 (summer time) is
        // seven calendar days but only 167 hours.
        let now = local("2027-03-23T10:00");
        let start = local("2027-03-30T10:00");
        assert_eq!(start - now, Duration::hours(167));
        assert_eq!(
            check_planned(
                &policy,
                Stockholm,
                now,
                start,
                start + Duration::hours(2),
                false
            ),
            Ok(false)
        );
        assert_eq!(policy.announce_at(Stockholm, start), now);
        assert!(check_planned(
            &policy,
            Stockholm,
            now,
            start - Duration::minutes(1),
            start + Duration::hours(2),
            true
        )
        .is_err());
    }

    #[test]
    fn a_ten_day_policy_refuses_nine_days() {
        let policy = NoticePolicy {
            min_lead_days: 10,
            ..Default::default()
        };
        let now = utc("2026-12-01T09:00:00Z");
        let start = now + Duration::days(9);
        assert!(matches!(
            check_planned(
                &policy,
                Stockholm,
                now,
                start,
                start + Duration::hours(1),
                true
            ),
            Err(WindowRefusal::TooLate { lead_days: 10, .. })
        ));
    }

    #[test]
    fn outside_the_preferred_hours_needs_an_acknowledgement() {
        let policy = NoticePolicy::default();
        let now = local("2026-12-01T10:00");
        // Monday 2026-12-14 is not Tuesday to Thursday.
        let (start, end) = (local("2026-12-14T10:00"), local("2026-12-14T12:00"));
        assert_eq!(
            check_planned(&policy, Stockholm, now, start, end, false),
            Err(WindowRefusal::OutsidePreferred)
        );
        assert_eq!(
            check_planned(&policy, Stockholm, now, start, end, true),
            Ok(true)
        );
        // Tuesday 10:00-13:00 fits; 12:00-14:00 does not.
        let (start, end) = (local("2026-12-15T10:00"), local("2026-12-15T13:00"));
        assert_eq!(
            check_planned(&policy, Stockholm, now, start, end, false),
            Ok(false)
        );
        let (start, end) = (local("2026-12-15T12:00"), local("2026-12-15T14:00"));
        assert!(check_planned(&policy, Stockholm, now, start, end, false).is_err());
    }

    #[test]
    fn end_before_start_and_past_windows_are_refused() {
        let policy = NoticePolicy::default();
        let now = local("2026-12-01T10:00");
        let start = local("2026-12-15T10:00");
        assert!(matches!(
            check_planned(&policy, Stockholm, now, start, start, true),
            Err(WindowRefusal::Invalid(_))
        ));
        let past = local("2026-11-01T10:00");
        assert!(matches!(
            check_planned(&policy, Stockholm, now, past, past + Duration::hours(1), true),
            Err(WindowRefusal::Invalid(e)) if e.field() == "starts_at"
        ));
    }

    #[test]
    fn local_times_follow_daylight_saving_time() {
        // Summer: UTC+2; winter: UTC+1.
        assert_eq!(local("2026-10-24T22:00"), utc("2026-10-24T20:00:00Z"));
        assert_eq!(local("2026-10-25T06:00"), utc("2026-10-25T05:00:00Z"));
        // 02:30 on 29 March 2026 never happens in Stockholm.
        assert!(parse_time("starts_at", "2026-03-29T02:30", Stockholm).is_err());
        // 02:30 on 25 October 2026 happens twice; the first is meant.
        assert_eq!(local("2026-10-25T02:30"), utc("2026-10-25T00:30:00Z"));
        assert_eq!(
            local("2026-10-25T08:00:00+01:00"),
            utc("2026-10-25T07:00:00Z")
        );
        assert!(parse_time("starts_at", "next tuesday", Stockholm).is_err());
    }

    #[test]
    fn the_first_tuesday_of_every_month_at_ten() {
        let r = Recurrence::parse("0 10 1-7 * 2", 120).expect("parses");
        let (start, end) = r
            .next_after(Stockholm, local("2026-12-02T00:00"))
            .expect("fires");
        assert_eq!(start, local("2027-01-05T10:00"));
        assert_eq!(end, local("2027-01-05T12:00"));
        let (next, _) = r
            .next_after(Stockholm, start + Duration::seconds(1))
            .expect("fires");
        assert_eq!(next, local("2027-02-02T10:00"));
        // Sunday is 0 or 7, as in every crontab.
        for sunday in ["0 8 * * 0", "0 8 * * 7", "0 8 * * sun"] {
            let r = Recurrence::parse(sunday, 60).expect("parses");
            let (start, _) = r
                .next_after(Stockholm, local("2026-12-01T00:00"))
                .expect("fires");
            assert_eq!(start, local("2026-12-06T08:00"), "{sunday}");
        }
    }

    #[test]
    fn a_weekly_window_keeps_its_local_hours_across_the_october_change() {
        let r = Recurrence::parse("0 8 * * 0", 7 * 60).expect("parses");
        let (before, before_end) = r
            .next_after(Stockholm, local("2026-10-17T00:00"))
            .expect("fires");
        let (after, after_end) = r
            .next_after(Stockholm, before + Duration::seconds(1))
            .expect("fires");
        assert_eq!(before, utc("2026-10-18T06:00:00Z"));
        assert_eq!(before_end, utc("2026-10-18T13:00:00Z"));
        assert_eq!(after, utc("2026-10-25T07:00:00Z"));
        assert_eq!(after_end, utc("2026-10-25T14:00:00Z"));
    }

    #[test]
    fn cron_expressions_that_cannot_work_are_refused() {
        let policy = NoticePolicy::default();
        let now = local("2026-12-01T10:00");
        assert!(Recurrence::parse("0 10 * *", 60).is_err());
        assert!(Recurrence::parse("0 25 * * *", 60).is_err());
        assert!(Recurrence::parse("0 10 * * 8", 60).is_err());
        assert!(Recurrence::parse("0 10 * * 2", 0).is_err());
        let never = Recurrence::parse("0 10 30 2 *", 60).expect("parses");
        let err = never
            .first_announceable(&policy, Stockholm, now)
            .expect_err("never fires");
        assert!(err.message().contains("never fires"), "{err}");
        let hourly = Recurrence::parse("0 * * * *", 30).expect("parses");
        assert!(hourly.first_announceable(&policy, Stockholm, now).is_err());
        let overlapping = Recurrence::parse("0 10 * * *", 25 * 60).expect("parses");
        assert!(overlapping
            .first_announceable(&policy, Stockholm, now)
            .is_err());
    }

    #[test]
    fn the_first_occurrence_announced_is_the_first_beyond_the_lead_time() {
        let policy = NoticePolicy::default();
        let r = Recurrence::parse("0 10 * * 2", 120).expect("parses");
        // Tuesday 1 December: the 8 December occurrence is 7 days ahead exactly and counts.
        let (start, _) = r
            .first_announceable(&policy, Stockholm, local("2026-12-01T10:00"))
            .expect("fires");
        assert_eq!(start, local("2026-12-08T10:00"));
        let (start, _) = r
            .first_announceable(&policy, Stockholm, local("2026-12-01T10:01"))
            .expect("fires");
        assert_eq!(start, local("2026-12-15T10:00"));
        assert!(r.all_preferred(&policy, Stockholm, start, 12));
        let sunday = Recurrence::parse("0 8 * * 0", 60).expect("parses");
        assert!(!sunday.all_preferred(&policy, Stockholm, start, 3));
    }

    #[test]
    fn status_follows_the_clock() {
        let w = WindowTimes {
            starts_at: utc("2026-12-15T09:00:00Z"),
            ends_at: Some(utc("2026-12-15T11:00:00Z")),
            rescheduled: false,
            cancelled: false,
        };
        assert_eq!(
            w.status_at(utc("2026-12-15T08:00:00Z")),
            WindowStatus::Scheduled
        );
        assert_eq!(
            w.status_at(utc("2026-12-15T09:00:00Z")),
            WindowStatus::InProgress
        );
        assert_eq!(
            w.status_at(utc("2026-12-15T11:00:00Z")),
            WindowStatus::Completed
        );
        let moved = WindowTimes {
            rescheduled: true,
            ..w
        };
        assert_eq!(
            moved.status_at(utc("2026-12-15T08:00:00Z")),
            WindowStatus::Rescheduled
        );
        let cancelled = WindowTimes {
            cancelled: true,
            ..w
        };
        assert_eq!(
            cancelled.status_at(utc("2026-12-15T10:00:00Z")),
            WindowStatus::Cancelled
        );
        assert!(w.shown_to_devices(utc("2026-12-10T09:00:00Z"), Duration::days(7)));
        assert!(!w.shown_to_devices(utc("2026-12-01T09:00:00Z"), Duration::days(7)));
    }

    #[test]
    fn the_timetable_has_a_reminder_only_when_it_lies_ahead() {
        let policy = NoticePolicy::default();
        let start = utc("2026-12-15T09:00:00Z");
        let end = start + Duration::hours(2);
        let kinds = |now| {
            timetable(&policy, now, start, end)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(utc("2026-12-01T09:00:00Z")),
            [NoticeKind::Reminder, NoticeKind::Started, NoticeKind::Ended]
        );
        assert_eq!(
            kinds(utc("2026-12-14T10:00:00Z")),
            [NoticeKind::Started, NoticeKind::Ended]
        );
        assert_eq!(
            timetable(&policy, utc("2026-12-01T09:00:00Z"), start, end)[0].1,
            utc("2026-12-14T09:00:00Z")
        );
    }

    #[test]
    fn policies_with_values_out_of_range_are_refused() {
        assert!(NoticePolicy::default().validate().is_ok());
        let bad = |f: fn(&mut NoticePolicy)| {
            let mut p = NoticePolicy::default();
            f(&mut p);
            p.validate().is_err()
        };
        assert!(bad(|p| p.min_lead_days = 91));
        assert!(bad(|p| p.reminder_hours = 0));
        assert!(bad(|p| p.channels.clear()));
        assert!(bad(|p| p.disruption_follow_up_minutes = 5));
        assert!(bad(
            |p| p.preferred_windows[0].until = p.preferred_windows[0].from
        ));
        let sunday: NoticePolicy = serde_json::from_value(serde_json::json!({
            "min_lead_days": 10,
            "preferred_windows": [{ "days": ["sun"], "from": "08:00", "until": "15:00" }],
            "reminder_hours": 24, "channels": ["email", "sms"], "language": "en",
            "disruption_follow_up_minutes": 60
        }))
        .expect("the other city's policy");
        assert!(sunday.validate().is_ok());
        assert!(serde_json::from_value::<NoticePolicy>(serde_json::json!({
            "min_lead_days": 10,
            "preferred_windows": [{ "days": ["söndag"], "from": "08:00", "until": "15:00" }],
            "reminder_hours": 24, "channels": ["email"], "language": "sv",
            "disruption_follow_up_minutes": 60
        }))
        .is_err());
    }

    #[test]
    fn disruptions_always_go_by_email_and_sms() {
        let policy = NoticePolicy::default();
        assert_eq!(policy.channels_for(WindowKind::Planned), [Channel::Email]);
        assert_eq!(
            policy.channels_for(WindowKind::Disruption),
            [Channel::Email, Channel::Sms]
        );
    }
}
