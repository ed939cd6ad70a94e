//! Planned maintenance, recurring windows and unplanned disruptions: each change is checked
//! against the operator's notice policy (`domain::maintenance`), stored with the notices it
//! owes the providers' IT contacts (the announcement, the reminders, start and end, follow-ups),
//! and then this node's notice workers are woken and its notice board read again, so phones
//! checking in here see the change at once.

use chrono::{DateTime, Utc};

use super::{FlowError, FlowResult, RejectionClass};
use crate::domain::audit::AuditEvent;
use crate::domain::maintenance::{
    check_planned, timetable, NoticeKind, NoticePolicy, Recurrence, WindowKind, WindowRefusal,
    WindowStatus,
};
use crate::state::AppState;
use crate::store::notices::{
    NewNotice, NewSeries, NewWindow, Series, Targets, Window, WindowChange, WindowText,
};

/// What a window is about and who it concerns, checked by the front end.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub text: WindowText,
    pub targets: Targets,
}

/// The flow's refusal of a window the notice policy does not allow.
fn refused(state: &AppState, r: WindowRefusal) -> FlowError {
    match r {
        WindowRefusal::Invalid(e) => e.into(),
        WindowRefusal::TooLate {
            earliest,
            lead_days,
        } => FlowError::rejected(
            RejectionClass::Unprocessable,
            "notice-too-late",
            "Announced too late",
            format!(
                "planned maintenance must be announced at least {lead_days} days before it starts; \
                 the earliest start announced now is {}",
                state.local(earliest).format("%Y-%m-%d %H:%M %:z")
            ),
        ),
        WindowRefusal::OutsidePreferred => FlowError::rejected(
            RejectionClass::Unprocessable,
            "outside-preferred-window",
            "Outside the preferred maintenance windows",
            "the window lies outside the preferred maintenance windows of the notice policy; \
             choose another time or send acknowledge_outside_preferred: true",
        ),
    }
}

/// Checks a planned window's time against the notice policy now. Returns the time, whether the
/// window lies outside the preferred windows (which the request acknowledged), and the notices
/// it owes: the announcement (`first`) now, then the policy's reminders, start and end.
async fn planned(
    state: &AppState,
    first: NoticeKind,
    (starts_at, ends_at): (DateTime<Utc>, DateTime<Utc>),
    acknowledge_outside_preferred: bool,
) -> FlowResult<(DateTime<Utc>, bool, Vec<NewNotice>)> {
    let p = state.notice_policy().await?;
    let now = state.clock.now();
    let tz = state.config.time_zone;
    let outside = check_planned(
        &p,
        tz,
        now,
        starts_at,
        ends_at,
        acknowledge_outside_preferred,
    )
    .map_err(|r| refused(state, r))?;
    let notices = owed_notices(&p, (first, now), starts_at, ends_at);
    Ok((now, outside, notices))
}

/// The notices a planned window from `start` to `end` owes the IT contacts: `first` at its
/// time, then the policy's reminders, start and end notices.
pub(super) fn owed_notices(
    p: &NoticePolicy,
    (first, at): (NoticeKind, DateTime<Utc>),
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<NewNotice> {
    let mut notices = vec![NewNotice::at(first, at)];
    notices.extend(
        timetable(p, at, start, end)
            .into_iter()
            .map(|(k, at)| NewNotice::at(k, at)),
    );
    notices
}

/// Wakes the notice workers and shows the change to phones checking in at this node.
async fn after_change(state: &AppState) {
    state.notice_wake.notify_one();
    if let Err(e) = state
        .notice_board
        .refresh(state.store.as_ref(), state.clock.now())
        .await
    {
        tracing::warn!(error = %e, "could not refresh the notice board");
    }
}

/// A message for the IT contacts, trimmed; `required` for a disruption's update.
pub fn parse_message(message: Option<&str>, required: bool) -> FlowResult<Option<String>> {
    let message = message.map(str::trim).filter(|m| !m.is_empty());
    match message {
        None if required => Err(FlowError::invalid("message", "is required")),
        Some(m) if m.chars().count() > 2000 => Err(FlowError::invalid(
            "message",
            "must be at most 2000 characters",
        )),
        m => Ok(m.map(str::to_string)),
    }
}

/// Schedules planned maintenance from `starts_at` to `ends_at`. The providers' IT contacts are
/// notified at once, reminded before it starts, and told when it starts and ends.
pub async fn schedule(
    state: &AppState,
    about: Announcement,
    (starts_at, ends_at): (DateTime<Utc>, DateTime<Utc>),
    acknowledge_outside_preferred: bool,
    by: i64,
    event: AuditEvent,
) -> FlowResult<Window> {
    let (now, outside, notices) = planned(
        state,
        NoticeKind::Announced,
        (starts_at, ends_at),
        acknowledge_outside_preferred,
    )
    .await?;
    let window = NewWindow {
        kind: WindowKind::Planned,
        series_id: None,
        text: about.text,
        targets: about.targets,
        starts_at,
        ends_at: Some(ends_at),
        outside_preferred: outside,
        created_by: Some(by),
    };
    let event = event.details(serde_json::json!({
        "title": window.text.title,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "outside_preferred_acknowledged": outside,
    }));
    let created = state
        .store
        .create_window(&window, &notices, now, event)
        .await?;
    after_change(state).await;
    Ok(created)
}

/// Window `id` if it is planned maintenance that has not started: only that can be moved.
pub async fn movable_window(state: &AppState, id: i64) -> FlowResult<Window> {
    let current = state.store.window(id).await?;
    let now = state.clock.now();
    let movable = matches!(
        current.status_at(now),
        WindowStatus::Scheduled | WindowStatus::Rescheduled
    );
    if current.kind != WindowKind::Planned || !movable {
        return Err(FlowError::rejected(
            RejectionClass::Conflict,
            "window-not-movable",
            "The window cannot be moved",
            format!(
                "only planned maintenance that has not started can be rescheduled; this one is {}",
                current.status_at(now).as_str()
            ),
        ));
    }
    Ok(current)
}

/// Moves `current` (a [`movable_window`]). The new time must respect the lead time like a new
/// window; a notice of the change goes out and the reminder, start and end notices follow the
/// new time.
pub async fn reschedule(
    state: &AppState,
    current: &Window,
    (starts_at, ends_at): (DateTime<Utc>, DateTime<Utc>),
    acknowledge_outside_preferred: bool,
    event: AuditEvent,
) -> FlowResult<Window> {
    let (now, outside, notices) = planned(
        state,
        NoticeKind::Rescheduled,
        (starts_at, ends_at),
        acknowledge_outside_preferred,
    )
    .await?;
    let event = event.details(serde_json::json!({
        "from": { "starts_at": current.starts_at, "ends_at": current.ends_at },
        "to": { "starts_at": starts_at, "ends_at": ends_at },
        "outside_preferred_acknowledged": outside,
    }));
    let change = WindowChange::Reschedule {
        starts_at,
        ends_at,
        outside_preferred: outside,
    };
    let changed = state
        .store
        .change_window(current.id, &change, &notices, now, event)
        .await?;
    after_change(state).await;
    Ok(changed)
}

/// Window `id` if it is planned maintenance that has not ended: only that can be cancelled.
pub async fn cancellable_window(state: &AppState, id: i64) -> FlowResult<Window> {
    let current = state.store.window(id).await?;
    let now = state.clock.now();
    if current.kind != WindowKind::Planned || current.status_at(now) == WindowStatus::Completed {
        return Err(FlowError::rejected(
            RejectionClass::Conflict,
            "window-not-cancellable",
            "The window cannot be cancelled",
            "only planned maintenance that has not ended can be cancelled; close a disruption instead",
        ));
    }
    Ok(current)
}

/// Window `id` if it is a disruption still open.
pub async fn open_disruption_window(state: &AppState, id: i64) -> FlowResult<Window> {
    let w = state.store.window(id).await?;
    if w.kind != WindowKind::Disruption {
        return Err(FlowError::Store(crate::store::StoreError::NotFound));
    }
    if w.closed_at.is_some() {
        return Err(FlowError::rejected(
            RejectionClass::Conflict,
            "disruption-closed",
            "The disruption is closed",
            "the disruption is already closed; open a new one if the problem is back",
        ));
    }
    Ok(w)
}

/// What a person tells the IT contacts about a window: a cancellation, a disruption's update or
/// its resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Telling {
    Cancel,
    DisruptionUpdate,
    DisruptionClosed,
}

/// Cancels planned maintenance, sends an update about an open disruption or closes it, with
/// one notice due now carrying `message`. The window was checked with [`cancellable_window`]
/// or [`open_disruption_window`].
pub async fn tell(
    state: &AppState,
    id: i64,
    telling: Telling,
    message: Option<String>,
    event: AuditEvent,
) -> FlowResult<Window> {
    let (kind, change) = match telling {
        Telling::Cancel => (NoticeKind::Cancelled, WindowChange::Cancel),
        Telling::DisruptionUpdate => (NoticeKind::DisruptionUpdate, WindowChange::Notify),
        Telling::DisruptionClosed => (NoticeKind::DisruptionResolved, WindowChange::Close),
    };
    let now = state.clock.now();
    let notices = vec![NewNotice {
        kind,
        message: message.clone(),
        due_at: now,
    }];
    let event = event.details(serde_json::json!({ "message": message }));
    let changed = state
        .store
        .change_window(id, &change, &notices, now, event)
        .await?;
    after_change(state).await;
    Ok(changed)
}

/// Schedules recurring maintenance. Each occurrence is announced the policy's lead time before
/// it starts, and then reminded, started and ended like a one-off window.
pub async fn schedule_series(
    state: &AppState,
    about: Announcement,
    recurrence: &Recurrence,
    duration_minutes: u32,
    acknowledge_outside_preferred: bool,
    by: i64,
    event: AuditEvent,
) -> FlowResult<Series> {
    let p = state.notice_policy().await?;
    let now = state.clock.now();
    let tz = state.config.time_zone;
    let (first, _) = recurrence.first_announceable(&p, tz, now)?;
    // Twelve occurrences are checked against the preferred windows: enough to catch a monthly
    // pattern that drifts onto the wrong weekday.
    let preferred = recurrence.all_preferred(&p, tz, first, 12);
    if !preferred && !acknowledge_outside_preferred {
        return Err(refused(state, WindowRefusal::OutsidePreferred));
    }
    let series = NewSeries {
        text: about.text,
        targets: about.targets,
        cron: recurrence.expression.clone(),
        duration_minutes,
        outside_preferred: !preferred,
        next_start_at: first,
        created_by: Some(by),
    };
    let event = event.details(serde_json::json!({
        "title": series.text.title,
        "cron": series.cron,
        "duration_minutes": series.duration_minutes,
        "first_start_at": first,
        "outside_preferred_acknowledged": !preferred,
    }));
    let created = state.store.create_series(&series, now, event).await?;
    state.notice_wake.notify_one();
    Ok(created)
}

/// Announces an unplanned disruption: SMS and e-mail to the IT contacts at once, and follow-ups
/// at the policy's interval until it is closed.
pub async fn open_disruption(
    state: &AppState,
    about: Announcement,
    by: i64,
    event: AuditEvent,
) -> FlowResult<Window> {
    let p = state.notice_policy().await?;
    let now = state.clock.now();
    let follow_up = now + chrono::Duration::minutes(i64::from(p.disruption_follow_up_minutes));
    let notices = vec![
        NewNotice::at(NoticeKind::DisruptionOpened, now),
        NewNotice::at(NoticeKind::DisruptionFollowUp, follow_up),
    ];
    let window = NewWindow {
        kind: WindowKind::Disruption,
        series_id: None,
        text: about.text,
        targets: about.targets,
        starts_at: now,
        ends_at: None,
        outside_preferred: false,
        created_by: Some(by),
    };
    let event = event.details(serde_json::json!({ "title": window.text.title }));
    let created = state
        .store
        .create_window(&window, &notices, now, event)
        .await?;
    after_change(state).await;
    Ok(created)
}
