//! Planned maintenance, recurring windows, unplanned disruptions, acknowledgements and the
//! operator's notice policy. The rules (lead time, preferred windows, recurrence, timetable)
//! live in `domain::maintenance`; handlers parse, authorise and pass on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{checked, ApiError, ApiJson, ApiPath, ApiQuery, Fields};
use super::AppState;
use crate::domain::maintenance::{
    check_text, parse_time, NoticePolicy, Recurrence, WindowKind, WindowStatus,
};
use crate::domain::organisation::OrgKind;
use crate::domain::role::Role;
use crate::flows;
use crate::flows::maintenance::{parse_message, Announcement, Telling};
use crate::store::notices::{Notice, Series, Targets, Window, WindowFilter, WindowText};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, set_policy))
        .routes(routes!(list_windows, create_window))
        .routes(routes!(get_window))
        .routes(routes!(reschedule_window))
        .routes(routes!(cancel_window))
        .routes(routes!(acknowledge_window))
        .routes(routes!(list_series, create_series))
        .routes(routes!(get_series))
        .routes(routes!(cancel_series))
        .routes(routes!(open_disruption))
        .routes(routes!(update_disruption))
        .routes(routes!(close_disruption))
}

// The notice policy

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
    /// Where times are read and shown (the installation's setting).
    pub time_zone: String,
}

fn policy_view(state: &AppState, p: &NoticePolicy) -> PolicyView {
    PolicyView {
        policy: serde_json::to_value(p).unwrap_or_default(),
        time_zone: state.config.time_zone.name().to_string(),
    }
}

/// The operator's notice policy: lead time, preferred windows, reminder, channels, language.
#[utoipa::path(get, path = "/api/v1/notice-policy", tag = "maintenance", security(("bearer" = [])),
    responses((status = 200, body = PolicyView)))]
async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PolicyView>, ApiError> {
    caller.actor.require_operator()?;
    let p = state.notice_policy().await?;
    Ok(Json(policy_view(&state, &p)))
}

/// Replace the notice policy (operator admin). Example for a city with 10 days' notice and
/// Sunday windows: `{"min_lead_days": 10, "preferred_windows": [{"days": ["sun"], "from":
/// "08:00", "until": "15:00"}], "reminder_hours": 24, "channels": ["email", "sms"], "language":
/// "sv", "disruption_follow_up_minutes": 120}`.
#[utoipa::path(put, path = "/api/v1/notice-policy", tag = "maintenance", security(("bearer" = [])),
    request_body(content = Object),
    responses((status = 200, body = PolicyView), (status = 422, body = super::problem::Problem)))]
async fn set_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NoticePolicy>,
) -> Result<Json<PolicyView>, ApiError> {
    caller.actor.require_operator_admin()?;
    body.validate()?;
    let event = caller
        .event("notice_policy.set", "notice_policy", None)
        .details(serde_json::to_value(&body).unwrap_or_default());
    state
        .store
        .set_notice_policy(state.operator_id, &body, state.clock.now(), event)
        .await?;
    Ok(Json(policy_view(&state, &body)))
}

// Windows

#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeView {
    pub id: i64,
    pub kind: String,
    pub due_at: DateTime<FixedOffset>,
    /// `scheduled`, `expanded` (handed to the outbox) or `void` (the window moved or ended).
    pub state: String,
    pub expanded_at: Option<DateTime<FixedOffset>>,
    /// Sent well after it was due (the server was down).
    pub late: bool,
    pub message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcknowledgementView {
    pub provider_id: i64,
    pub account_email: String,
    pub acknowledged_at: DateTime<FixedOffset>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WindowView {
    pub id: i64,
    /// `planned` or `disruption`.
    pub kind: String,
    pub series_id: Option<i64>,
    pub title: String,
    pub description: String,
    pub systems: Vec<String>,
    /// The providers concerned; absent when it concerns all.
    pub provider_ids: Option<Vec<i64>>,
    pub starts_at: DateTime<FixedOffset>,
    /// Absent while a disruption is open.
    pub ends_at: Option<DateTime<FixedOffset>>,
    pub status: WindowStatus,
    /// It lies outside the preferred windows, which the scheduler acknowledged.
    pub outside_preferred: bool,
    pub revision: i64,
    pub rescheduled_at: Option<DateTime<FixedOffset>>,
    pub cancelled_at: Option<DateTime<FixedOffset>>,
    pub closed_at: Option<DateTime<FixedOffset>>,
    pub created_at: DateTime<FixedOffset>,
    /// Who acknowledged it (a provider sees its own people only).
    pub acknowledgements: Vec<AcknowledgementView>,
    /// Providers concerned that no one has acknowledged for (operator only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_acknowledged: Option<Vec<i64>>,
    /// The notices and when they go out (operator only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notices: Option<Vec<NoticeView>>,
}

impl WindowView {
    /// The view for a caller of organisation `own` (`None` for the operator): a provider sees
    /// only itself among the providers concerned, never which others are.
    fn new(state: &AppState, w: Window, own: Option<i64>) -> Self {
        let now = state.clock.now();
        WindowView {
            id: w.id,
            kind: w.kind.as_str().to_string(),
            series_id: w.series_id,
            status: w.status_at(now),
            title: w.text.title,
            description: w.text.description,
            systems: w.text.systems,
            provider_ids: match (w.targets, own) {
                (Targets::All, _) => None,
                (Targets::Providers(_), Some(own)) => Some(vec![own]),
                (Targets::Providers(ids), None) => Some(ids),
            },
            starts_at: state.local(w.starts_at),
            ends_at: w.ends_at.map(|t| state.local(t)),
            outside_preferred: w.outside_preferred,
            revision: w.revision,
            rescheduled_at: w.rescheduled_at.map(|t| state.local(t)),
            cancelled_at: w.cancelled_at.map(|t| state.local(t)),
            closed_at: w.closed_at.map(|t| state.local(t)),
            created_at: state.local(w.created_at),
            acknowledgements: Vec::new(),
            not_acknowledged: None,
            notices: None,
        }
    }
}

fn notice_view(state: &AppState, n: Notice) -> NoticeView {
    NoticeView {
        id: n.id,
        kind: n.kind.as_str().to_string(),
        due_at: state.local(n.due_at),
        state: n.state.as_str().to_string(),
        expanded_at: n.expanded_at.map(|t| state.local(t)),
        late: n.late,
        message: n.message,
    }
}

/// A window the caller may see: every one for the operator, those concerning its own
/// organisation for a provider's people; others are 404.
async fn visible_window(state: &AppState, caller: &Caller, id: i64) -> Result<Window, ApiError> {
    let w = state.store.window(id).await?;
    match caller.actor.scope().org() {
        Some(own) if !w.targets.includes(own) => Err(ApiError::not_found()),
        _ => Ok(w),
    }
}

/// The full view: notices and acknowledgements for the operator, own acknowledgements for a
/// provider.
async fn full_view(state: &AppState, caller: &Caller, w: Window) -> Result<WindowView, ApiError> {
    let acks = state.store.acknowledgements(w.id).await?;
    let targets = w.targets.clone();
    let mut view = WindowView::new(state, w, caller.actor.scope().org());
    let own = caller.actor.scope().org();
    view.acknowledgements = acks
        .iter()
        .filter(|a| own.is_none_or(|o| o == a.provider_id))
        .map(|a| AcknowledgementView {
            provider_id: a.provider_id,
            account_email: a.account_email.clone(),
            acknowledged_at: state.local(a.acknowledged_at),
        })
        .collect();
    if own.is_none() {
        let acknowledged: HashSet<i64> = acks.iter().map(|a| a.provider_id).collect();
        let concerned: Vec<i64> = match targets {
            Targets::Providers(ids) => ids,
            Targets::All => {
                let today = state.clock.today(state.config.time_zone);
                state
                    .store
                    .list_providers()
                    .await?
                    .into_iter()
                    .filter(|p| p.contract.is_some_and(|c| c.is_active_on(today)))
                    .map(|p| p.id)
                    .collect()
            }
        };
        view.not_acknowledged = Some(
            concerned
                .into_iter()
                .filter(|p| !acknowledged.contains(p))
                .collect(),
        );
        view.notices = Some(
            state
                .store
                .window_notices(view.id)
                .await?
                .into_iter()
                .map(|n| notice_view(state, n))
                .collect(),
        );
    }
    Ok(view)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// `planned` or `disruption`.
    pub kind: Option<String>,
    /// Include windows that have ended (default: only current and future ones).
    #[serde(default)]
    pub include_past: bool,
    /// Windows with ids below this (the cursor; newest first).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// Maintenance windows and disruptions, newest first: all for the operator, those concerning
/// the caller's organisation for a provider.
#[utoipa::path(get, path = "/api/v1/maintenance-windows", tag = "maintenance", security(("bearer" = [])),
    params(WindowQuery), responses((status = 200, body = Vec<WindowView>)))]
async fn list_windows(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<WindowQuery>,
) -> Result<Json<Vec<WindowView>>, ApiError> {
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(WindowKind::parse(k).ok_or_else(|| {
            ApiError::bad_request("invalid-query", "kind must be planned or disruption")
        })?),
    };
    let filter = WindowFilter {
        provider_id: caller.actor.scope().org(),
        kind,
        ending_after: (!q.include_past).then(|| state.clock.now()),
        before_id: q.before,
        limit: q.limit.unwrap_or(100).clamp(1, 500),
    };
    let windows = state.store.list_windows(&filter).await?;
    Ok(Json(
        windows
            .into_iter()
            .map(|w| WindowView::new(&state, w, caller.actor.scope().org()))
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWindowBody {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// The systems affected: `MDM`, a care app's back end.
    #[serde(default)]
    pub systems: Vec<String>,
    /// The providers concerned; leave out for all.
    pub provider_ids: Option<Vec<i64>>,
    /// Local time (`2026-12-15T10:00`) in the operator's time zone, or RFC 3339.
    pub starts_at: String,
    pub ends_at: String,
    /// Schedule it even though it lies outside the preferred windows (recorded in the audit
    /// trail).
    #[serde(default)]
    pub acknowledge_outside_preferred: bool,
}

/// The providers named, checked to exist; `All` when none are named.
async fn parse_targets(
    state: &AppState,
    fields: &mut Fields,
    ids: Option<&[i64]>,
) -> Result<Targets, ApiError> {
    let Some(ids) = ids else {
        return Ok(Targets::All);
    };
    if ids.is_empty() || ids.len() > 1000 {
        fields.push(
            "provider_ids",
            "name 1 to 1000 providers, or leave it out for all",
        );
        return Ok(Targets::All);
    }
    let known: HashSet<i64> = state
        .store
        .list_providers()
        .await?
        .into_iter()
        .filter(|p| p.kind == OrgKind::Provider)
        .map(|p| p.id)
        .collect();
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| !known.contains(id))
        .map(i64::to_string)
        .collect();
    if !unknown.is_empty() {
        fields.push(
            "provider_ids",
            format!("no such providers: {}", unknown.join(", ")),
        );
    }
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    Ok(Targets::Providers(ids))
}

fn text(fields: &mut Fields, title: &str, description: &str, systems: &[String]) -> WindowText {
    fields.check(check_text(title, description, systems));
    WindowText {
        title: title.trim().to_string(),
        description: description.trim().to_string(),
        systems: systems.iter().map(|s| s.trim().to_string()).collect(),
    }
}

/// Schedule planned maintenance (operator admin). The providers' IT contacts are notified at
/// once, reminded before it starts, and told when it starts and ends.
#[utoipa::path(post, path = "/api/v1/maintenance-windows", tag = "maintenance", security(("bearer" = [])),
    request_body = NewWindowBody,
    responses((status = 201, body = WindowView),
              (status = 422, description = "`notice-too-late`, `outside-preferred-window` or `validation`", body = super::problem::Problem)))]
async fn create_window(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewWindowBody>,
) -> Result<(StatusCode, Json<WindowView>), ApiError> {
    caller.actor.require_operator_admin()?;
    let tz = state.config.time_zone;
    let mut fields = Fields::default();
    let text = text(&mut fields, &body.title, &body.description, &body.systems);
    let targets = parse_targets(&state, &mut fields, body.provider_ids.as_deref()).await?;
    let start = fields.check(parse_time("starts_at", &body.starts_at, tz));
    let end = fields.check(parse_time("ends_at", &body.ends_at, tz));
    fields.finish()?;
    let (start, end) = (checked(start)?, checked(end)?);
    let event = caller.event("maintenance.schedule", "maintenance_window", None);
    let created = flows::maintenance::schedule(
        &state,
        Announcement { text, targets },
        (start, end),
        body.acknowledge_outside_preferred,
        caller.actor.account_id,
        event,
    )
    .await?;
    let view = full_view(&state, &caller, created).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One window or disruption, with its notices and who acknowledged it.
#[utoipa::path(get, path = "/api/v1/maintenance-windows/{id}", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = WindowView), (status = 404, body = super::problem::Problem)))]
async fn get_window(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WindowView>, ApiError> {
    let w = visible_window(&state, &caller, id).await?;
    Ok(Json(full_view(&state, &caller, w).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleBody {
    pub starts_at: String,
    pub ends_at: String,
    #[serde(default)]
    pub acknowledge_outside_preferred: bool,
}

/// Move planned maintenance (operator admin). The new time must respect the lead time like a
/// new window; a notice of the change goes out and the reminder, start and end notices follow
/// the new time.
#[utoipa::path(post, path = "/api/v1/maintenance-windows/{id}/reschedule", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = RescheduleBody,
    responses((status = 200, body = WindowView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn reschedule_window(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RescheduleBody>,
) -> Result<Json<WindowView>, ApiError> {
    caller.actor.require_operator_admin()?;
    let current = flows::maintenance::movable_window(&state, id).await?;
    let tz = state.config.time_zone;
    let mut fields = Fields::default();
    let start = fields.check(parse_time("starts_at", &body.starts_at, tz));
    let end = fields.check(parse_time("ends_at", &body.ends_at, tz));
    fields.finish()?;
    let (start, end) = (checked(start)?, checked(end)?);
    let event = caller.event(
        "maintenance.reschedule",
        "maintenance_window",
        Some(id.to_string()),
    );
    let changed = flows::maintenance::reschedule(
        &state,
        &current,
        (start, end),
        body.acknowledge_outside_preferred,
        event,
    )
    .await?;
    Ok(Json(full_view(&state, &caller, changed).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// A sentence for the IT contacts (the reason, the current state).
    #[serde(default)]
    pub message: Option<String>,
}

/// Cancel planned maintenance (operator admin); the IT contacts are told.
#[utoipa::path(post, path = "/api/v1/maintenance-windows/{id}/cancel", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = MessageBody,
    responses((status = 200, body = WindowView), (status = 409, body = super::problem::Problem)))]
async fn cancel_window(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<MessageBody>,
) -> Result<Json<WindowView>, ApiError> {
    caller.actor.require_operator_admin()?;
    flows::maintenance::cancellable_window(&state, id).await?;
    let message = parse_message(body.message.as_deref(), false)?;
    let event = caller.event(
        "maintenance.cancel",
        "maintenance_window",
        Some(id.to_string()),
    );
    told(&state, &caller, id, Telling::Cancel, message, event).await
}

/// Tells the IT contacts about window `id` and answers the window as it is now.
async fn told(
    state: &AppState,
    caller: &Caller,
    id: i64,
    telling: Telling,
    message: Option<String>,
    event: crate::domain::audit::AuditEvent,
) -> Result<Json<WindowView>, ApiError> {
    let changed = flows::maintenance::tell(state, id, telling, message, event).await?;
    Ok(Json(full_view(state, caller, changed).await?))
}

/// Acknowledge a notice for one's provider (provider admin). Acknowledging again changes
/// nothing.
#[utoipa::path(post, path = "/api/v1/maintenance-windows/{id}/acknowledge", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = super::problem::Problem), (status = 404, body = super::problem::Problem)))]
async fn acknowledge_window(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let w = visible_window(&state, &caller, id).await?;
    if caller.actor.role != Role::ProviderAdmin {
        return Err(ApiError::forbidden(
            "notices are acknowledged by the provider's IT contacts (provider admins)",
        ));
    }
    let event = caller
        .event(
            "maintenance.acknowledge",
            "maintenance_window",
            Some(w.id.to_string()),
        )
        .in_org(Some(caller.actor.org_id));
    state
        .store
        .acknowledge_window(
            w.id,
            caller.actor.org_id,
            caller.actor.account_id,
            state.clock.now(),
            event,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// Recurring windows

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesView {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub systems: Vec<String>,
    pub provider_ids: Option<Vec<i64>>,
    /// The 5-field cron expression, local time.
    pub cron: String,
    pub duration_minutes: u32,
    pub outside_preferred: bool,
    /// The next occurrence not yet announced (it is announced the lead time before it starts).
    pub next_start_at: Option<DateTime<FixedOffset>>,
    pub cancelled_at: Option<DateTime<FixedOffset>>,
    pub created_at: DateTime<FixedOffset>,
}

impl SeriesView {
    fn new(state: &AppState, s: Series) -> Self {
        SeriesView {
            id: s.id,
            title: s.text.title,
            description: s.text.description,
            systems: s.text.systems,
            provider_ids: match s.targets {
                Targets::All => None,
                Targets::Providers(ids) => Some(ids),
            },
            cron: s.cron,
            duration_minutes: s.duration_minutes,
            outside_preferred: s.outside_preferred,
            next_start_at: s.next_start_at.map(|t| state.local(t)),
            cancelled_at: s.cancelled_at.map(|t| state.local(t)),
            created_at: state.local(s.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSeriesBody {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub systems: Vec<String>,
    pub provider_ids: Option<Vec<i64>>,
    /// When each occurrence starts, local time, in the usual 5-field form: `0 10 1-7 * 2` is
    /// the first Tuesday of every month at 10:00 (both day fields must match).
    pub cron: String,
    pub duration_minutes: u32,
    #[serde(default)]
    pub acknowledge_outside_preferred: bool,
}

/// Schedule recurring maintenance (operator admin). Each occurrence is announced the policy's
/// lead time before it starts, and then reminded, started and ended like a one-off window.
#[utoipa::path(post, path = "/api/v1/maintenance-series", tag = "maintenance", security(("bearer" = [])),
    request_body = NewSeriesBody,
    responses((status = 201, body = SeriesView), (status = 422, body = super::problem::Problem)))]
async fn create_series(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSeriesBody>,
) -> Result<(StatusCode, Json<SeriesView>), ApiError> {
    caller.actor.require_operator_admin()?;
    let mut fields = Fields::default();
    let text = text(&mut fields, &body.title, &body.description, &body.systems);
    let targets = parse_targets(&state, &mut fields, body.provider_ids.as_deref()).await?;
    let recurrence = fields.check(Recurrence::parse(&body.cron, body.duration_minutes));
    fields.finish()?;
    let recurrence = checked(recurrence)?;
    let event = caller.event("maintenance.schedule_series", "maintenance_series", None);
    let created = flows::maintenance::schedule_series(
        &state,
        Announcement { text, targets },
        &recurrence,
        body.duration_minutes,
        body.acknowledge_outside_preferred,
        caller.actor.account_id,
        event,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(SeriesView::new(&state, created))))
}

/// Recurring maintenance (operator).
#[utoipa::path(get, path = "/api/v1/maintenance-series", tag = "maintenance", security(("bearer" = [])),
    responses((status = 200, body = Vec<SeriesView>)))]
async fn list_series(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SeriesView>>, ApiError> {
    caller.actor.require_operator()?;
    let all = state.store.list_series().await?;
    Ok(Json(
        all.into_iter()
            .map(|s| SeriesView::new(&state, s))
            .collect(),
    ))
}

/// One recurring maintenance series (operator).
#[utoipa::path(get, path = "/api/v1/maintenance-series/{id}", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = SeriesView), (status = 404, body = super::problem::Problem)))]
async fn get_series(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SeriesView>, ApiError> {
    caller.actor.require_operator()?;
    Ok(Json(SeriesView::new(&state, state.store.series(id).await?)))
}

/// Stop a series (operator admin): no further occurrences are announced. Occurrences already
/// announced stay and are cancelled one by one if needed.
#[utoipa::path(post, path = "/api/v1/maintenance-series/{id}/cancel", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = SeriesView), (status = 409, body = super::problem::Problem)))]
async fn cancel_series(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SeriesView>, ApiError> {
    caller.actor.require_operator_admin()?;
    let event = caller.event(
        "maintenance.cancel_series",
        "maintenance_series",
        Some(id.to_string()),
    );
    let s = state
        .store
        .cancel_series(id, state.clock.now(), event)
        .await?;
    Ok(Json(SeriesView::new(&state, s)))
}

// Unplanned disruptions

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDisruptionBody {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub systems: Vec<String>,
    pub provider_ids: Option<Vec<i64>>,
}

/// Announce an unplanned disruption (operator): SMS and e-mail to the IT contacts at once, and
/// follow-ups at the policy's interval until it is closed.
#[utoipa::path(post, path = "/api/v1/disruptions", tag = "maintenance", security(("bearer" = [])),
    request_body = NewDisruptionBody,
    responses((status = 201, body = WindowView), (status = 422, body = super::problem::Problem)))]
async fn open_disruption(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewDisruptionBody>,
) -> Result<(StatusCode, Json<WindowView>), ApiError> {
    caller.actor.require_operator()?;
    let mut fields = Fields::default();
    let text = text(&mut fields, &body.title, &body.description, &body.systems);
    let targets = parse_targets(&state, &mut fields, body.provider_ids.as_deref()).await?;
    fields.finish()?;
    let event = caller.event("disruption.open", "maintenance_window", None);
    let created = flows::maintenance::open_disruption(
        &state,
        Announcement { text, targets },
        caller.actor.account_id,
        event,
    )
    .await?;
    let view = full_view(&state, &caller, created).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Send an update about an open disruption (operator).
#[utoipa::path(post, path = "/api/v1/disruptions/{id}/updates", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = MessageBody,
    responses((status = 200, body = WindowView), (status = 409, body = super::problem::Problem)))]
async fn update_disruption(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<MessageBody>,
) -> Result<Json<WindowView>, ApiError> {
    let told = (Telling::DisruptionUpdate, true, "disruption.update");
    tell_disruption(&state, &caller, id, body, told).await
}

/// Close a disruption (operator): the IT contacts are told it is resolved and the follow-ups
/// stop.
#[utoipa::path(post, path = "/api/v1/disruptions/{id}/close", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = MessageBody,
    responses((status = 200, body = WindowView), (status = 409, body = super::problem::Problem)))]
async fn close_disruption(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<MessageBody>,
) -> Result<Json<WindowView>, ApiError> {
    let told = (Telling::DisruptionClosed, false, "disruption.close");
    tell_disruption(&state, &caller, id, body, told).await
}

/// Tells the IT contacts about an open disruption (operator): `telling`, with a message that
/// may be `required`, recorded as `action`.
async fn tell_disruption(
    state: &AppState,
    caller: &Caller,
    id: i64,
    body: MessageBody,
    (telling, required, action): (Telling, bool, &str),
) -> Result<Json<WindowView>, ApiError> {
    caller.actor.require_operator()?;
    flows::maintenance::open_disruption_window(state, id).await?;
    let message = parse_message(body.message.as_deref(), required)?;
    let event = caller.event(action, "maintenance_window", Some(id.to_string()));
    told(state, caller, id, telling, message, event).await
}
