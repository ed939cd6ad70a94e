//! Lost and stolen phones: the provider reports, the server locks the phone in lost mode, asks
//! for the SIM block and tells the service desk; the case keeps a timeline and ends with the phone
//! found or written off. The rules are in `domain::lost_case`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::domain::lost_case::{LossKind, LossReport, LostState};
use crate::domain::role::Scope;
use crate::flows;
use crate::store::lost_cases::{LostCase, LostCaseFilter};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(report_loss))
        .routes(routes!(list_lost_cases))
        .routes(routes!(get_lost_case))
        .routes(routes!(add_note))
        .routes(routes!(found))
        .routes(routes!(write_off))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub at: DateTime<FixedOffset>,
    /// `reported`, `lock_queued`, `sim_block_requested`, `service_desk_notified`,
    /// `checked_in`, `wipe_queued`, `unlock_queued`, `sim_reactivation_requested`, `found`,
    /// `written_off`, `note` (a person's note, `details.text`).
    pub kind: String,
    pub actor_id: Option<i64>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LostCaseView {
    pub id: i64,
    pub device_id: i64,
    pub serial: String,
    pub provider_id: Option<i64>,
    /// `lost` or `stolen`.
    pub kind: String,
    pub discovered_at: DateTime<FixedOffset>,
    pub reported_at: DateTime<FixedOffset>,
    pub reported_by: Option<i64>,
    pub circumstances: String,
    pub police_report: Option<String>,
    /// Reported more than 48 hours after the loss was discovered.
    pub late: bool,
    /// `open`, `found` or `written_off`.
    pub state: String,
    pub lock_command_id: Option<i64>,
    /// The automatic wipe, once the phone was not found in time.
    pub wipe_command_id: Option<i64>,
    /// The replacement asked for when the phone was written off.
    pub replacement_request_id: Option<i64>,
    pub resolved_at: Option<DateTime<FixedOffset>>,
    pub resolved_by: Option<i64>,
    /// Only in single-case answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
}

impl LostCaseView {
    fn new(state: &AppState, c: LostCase) -> Self {
        LostCaseView {
            id: c.id,
            device_id: c.device_id,
            serial: c.serial,
            provider_id: c.provider_id,
            kind: c.kind,
            discovered_at: state.local(c.discovered_at),
            reported_at: state.local(c.reported_at),
            reported_by: c.reported_by,
            circumstances: c.circumstances,
            police_report: c.police_report,
            late: c.late,
            state: match c.state {
                LostState::Open => "open",
                LostState::Found => "found",
                LostState::WrittenOff => "written_off",
            }
            .to_string(),
            lock_command_id: c.lock_command_id,
            wipe_command_id: c.wipe_command_id,
            replacement_request_id: c.replacement_request_id,
            resolved_at: c.resolved_at.map(|t| state.local(t)),
            resolved_by: c.resolved_by,
            timeline: None,
        }
    }
}

/// The case with its timeline.
async fn with_timeline(state: &AppState, c: LostCase) -> Result<LostCaseView, ApiError> {
    let events = state.store.lost_case_events(c.id).await?;
    let mut view = LostCaseView::new(state, c);
    view.timeline = Some(
        events
            .into_iter()
            .map(|e| TimelineEntry {
                at: state.local(e.at),
                kind: e.kind,
                actor_id: e.actor_id,
                details: serde_json::from_str(&e.details).unwrap_or_default(),
            })
            .collect(),
    );
    Ok(view)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LossReportBody {
    /// `lost` or `stolen`.
    pub kind: String,
    /// When the phone was found to be missing; not in the future.
    pub discovered_at: DateTime<Utc>,
    /// Where and how it went missing, at most 1000 characters.
    pub circumstances: String,
    /// The police report number, if one was filed.
    pub police_report: Option<String>,
}

/// Report a phone lost or stolen (anyone at its provider; a provider user only the phone they
/// hold; municipal IT for any). The phone is marked lost, a lost-mode lock is queued at top
/// priority, its SIM's block is requested and the service desk is told. A report more than 48
/// hours after the discovery is flagged late.
#[utoipa::path(post, path = "/api/v1/devices/{id}/lost-cases", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = LossReportBody,
    responses((status = 201, body = LostCaseView), (status = 404, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
async fn report_loss(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<LossReportBody>,
) -> Result<(StatusCode, Json<LostCaseView>), ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    if !caller.actor.may_report_loss(device.holder_id) {
        // A provider user sees only the phone they hold; another is not theirs to know of.
        return Err(ApiError::not_found());
    }
    let report = LossReport {
        kind: LossKind::parse(&body.kind)?,
        discovered_at: crate::clock::truncate(body.discovered_at),
        circumstances: body.circumstances.trim().to_string(),
        police_report: body
            .police_report
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty()),
    };
    let event = caller
        .event("lost_case.report", "lost_case", None)
        .in_org(device.provider_id);
    let case = flows::loss::report(&state, &device, report, caller.actor.account_id, event).await?;
    Ok((
        StatusCode::CREATED,
        Json(with_timeline(&state, case).await?),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LostCaseQuery {
    pub provider_id: Option<i64>,
    /// Only open cases.
    pub open: Option<bool>,
    /// Only cases reported more than 48 hours after discovery.
    pub late: Option<bool>,
    /// Cases with ids below this (the cursor; newest first).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// Lost and stolen cases, newest first: the operator's overview of open and late cases; a
/// provider's admin sees its own.
#[utoipa::path(get, path = "/api/v1/lost-cases", tag = "leasing", security(("bearer" = [])),
    params(LostCaseQuery), responses((status = 200, body = Vec<LostCaseView>)))]
async fn list_lost_cases(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LostCaseQuery>,
) -> Result<Json<Vec<LostCaseView>>, ApiError> {
    caller.actor.may_manage_phones()?;
    let filter = LostCaseFilter {
        provider_id: q.provider_id,
        open_only: q.open.unwrap_or(false),
        late_only: q.late.unwrap_or(false),
        before_id: q.before,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let cases = state
        .store
        .list_lost_cases(caller.actor.scope(), &filter)
        .await?;
    Ok(Json(
        cases
            .into_iter()
            .map(|c| LostCaseView::new(&state, c))
            .collect(),
    ))
}

/// One case with its timeline (a provider user: the cases they reported).
#[utoipa::path(get, path = "/api/v1/lost-cases/{id}", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = LostCaseView), (status = 404, body = super::problem::Problem)))]
async fn get_lost_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LostCaseView>, ApiError> {
    let case = visible_case(&state, &caller, id).await?;
    Ok(Json(with_timeline(&state, case).await?))
}

/// A case inside the caller's view, or 404: a provider user follows the cases they reported,
/// and no other.
async fn visible_case(state: &AppState, caller: &Caller, id: i64) -> Result<LostCase, ApiError> {
    let case = state.store.lost_case(caller.actor.scope(), id).await?;
    if caller.actor.may_manage_phones().is_err()
        && case.reported_by != Some(caller.actor.account_id)
    {
        return Err(ApiError::not_found());
    }
    Ok(case)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// What happened, at most 2000 characters (a call to the police, the insurer's answer).
    /// Never a care recipient's data or a personal identity number.
    pub text: String,
}

/// Add a note to the case's timeline (whoever may see the case: municipal IT, the provider's
/// admin, or the provider user who reported it). Notes can be added after the case ended.
#[utoipa::path(post, path = "/api/v1/lost-cases/{id}/notes", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = NoteBody,
    responses((status = 201, body = LostCaseView), (status = 404, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn add_note(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NoteBody>,
) -> Result<(StatusCode, Json<LostCaseView>), ApiError> {
    let case = visible_case(&state, &caller, id).await?;
    let text = crate::domain::lost_case::check_note(&body.text)?;
    let event = caller
        .event("lost_case.note", "lost_case", Some(id.to_string()))
        .in_org(case.provider_id);
    state
        .store
        .add_lost_case_note(id, caller.actor.account_id, &text, state.clock.now(), event)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(with_timeline(&state, case).await?),
    ))
}

/// The phone is found (operator): lost mode is turned off, the SIM's re-activation requested,
/// and the phone goes back to the status it had.
#[utoipa::path(post, path = "/api/v1/lost-cases/{id}/found", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = LostCaseView), (status = 409, body = super::problem::Problem)))]
async fn found(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LostCaseView>, ApiError> {
    caller.actor.require_operator()?;
    let case = state.store.lost_case(Scope::Everything, id).await?;
    let event = caller
        .event("lost_case.found", "lost_case", Some(id.to_string()))
        .in_org(case.provider_id);
    let case = flows::loss::found(&state, id, caller.actor.account_id, event).await?;
    Ok(Json(with_timeline(&state, case).await?))
}

/// Write the phone off (operator admin): its identity is revoked, it is retired, its lease
/// ends, and a replacement request is opened for the provider, which carries the lease's terms
/// and holder over to the phone that fulfils it.
#[utoipa::path(post, path = "/api/v1/lost-cases/{id}/write-off", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = LostCaseView), (status = 409, body = super::problem::Problem)))]
async fn write_off(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LostCaseView>, ApiError> {
    caller.actor.require_operator_admin()?;
    let case = state.store.lost_case(Scope::Everything, id).await?;
    let event = caller
        .event("lost_case.write_off", "lost_case", Some(id.to_string()))
        .in_org(case.provider_id);
    let case = flows::loss::write_off(&state, &case, caller.actor.account_id, event).await?;
    Ok(Json(with_timeline(&state, case).await?))
}
