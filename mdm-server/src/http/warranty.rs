//! Warranty cases (operator): a fault recorded against a phone, sent to the supplier only once
//! the phone is wiped, answered (repaired, replaced, rejected) and closed; a replacement phone
//! takes over the lease and holder once it is enrolled and compliant. Also the reminder lists of
//! warranties and leases ending soon. The rules are in `domain::warranty`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{invalid, ApiError, ApiJson, ApiPath, ApiQuery};
use super::AppState;
use super::LeaseView;
use crate::domain::role::Scope;
use crate::domain::warranty::{self, in_warranty, WarrantyState};
use crate::flows;
use crate::store::leasing::LeaseFilter;
use crate::store::warranty::{NewWarrantyCase, WarrantyCase, WarrantyMove};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_case, list_cases))
        .routes(routes!(get_case))
        .routes(routes!(move_case))
        .routes(routes!(swap))
        .routes(routes!(reminders))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WarrantyEventView {
    pub at: DateTime<FixedOffset>,
    pub actor_id: Option<i64>,
    pub from_state: Option<String>,
    /// The state reached, or `swapped` when a replacement took over the lease.
    pub to_state: String,
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WarrantyCaseView {
    pub id: i64,
    pub device_id: i64,
    pub serial: String,
    pub fault: String,
    /// Whether the phone's warranty covered the day the case was opened.
    pub under_warranty: bool,
    /// `opened`, `sent_to_supplier`, `repaired`, `replaced`, `rejected` or `closed`.
    pub state: String,
    pub supplier_reference: Option<String>,
    pub replacement_device_id: Option<i64>,
    pub opened_by: Option<i64>,
    pub opened_at: DateTime<FixedOffset>,
    pub updated_at: DateTime<FixedOffset>,
    pub closed_at: Option<DateTime<FixedOffset>>,
    /// Only in single-case answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<WarrantyEventView>>,
}

impl WarrantyCaseView {
    fn new(state: &AppState, c: WarrantyCase) -> Self {
        WarrantyCaseView {
            id: c.id,
            device_id: c.device_id,
            serial: c.serial,
            fault: c.fault,
            under_warranty: c.under_warranty,
            state: c.state.as_str().to_string(),
            supplier_reference: c.supplier_reference,
            replacement_device_id: c.replacement_device_id,
            opened_by: c.opened_by,
            opened_at: state.local(c.opened_at),
            updated_at: state.local(c.updated_at),
            closed_at: c.closed_at.map(|t| state.local(t)),
            timeline: None,
        }
    }
}

async fn with_timeline(state: &AppState, c: WarrantyCase) -> Result<WarrantyCaseView, ApiError> {
    let events = state.store.warranty_events(c.id).await?;
    let mut view = WarrantyCaseView::new(state, c);
    view.timeline = Some(
        events
            .into_iter()
            .map(|e| WarrantyEventView {
                at: state.local(e.at),
                actor_id: e.actor_id,
                from_state: e.from_state,
                to_state: e.to_state,
                note: e.note,
            })
            .collect(),
    );
    Ok(view)
}

/// Text a person adds to a case: trimmed, at most 500 characters, empty means none.
fn short_text(field: &str, text: Option<String>) -> Result<Option<String>, ApiError> {
    let text = text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    if text.as_ref().is_some_and(|t| t.chars().count() > 500) {
        return Err(invalid(field, "at most 500 characters"));
    }
    Ok(text)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWarrantyCaseBody {
    pub device_id: i64,
    /// What is wrong, at most 2000 characters.
    pub fault: String,
}

/// Open a warranty case for a phone (operator). A retired or lost phone gets none.
#[utoipa::path(post, path = "/api/v1/warranty-cases", tag = "leasing", security(("bearer" = [])),
    request_body = NewWarrantyCaseBody,
    responses((status = 201, body = WarrantyCaseView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn open_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewWarrantyCaseBody>,
) -> Result<(StatusCode, Json<WarrantyCaseView>), ApiError> {
    caller.actor.require_operator()?;
    let device = state
        .store
        .device(Scope::Everything, body.device_id)
        .await
        .map_err(|_| invalid("device_id", "no such device"))?;
    warranty::may_open(device.status, &body.fault)?;
    let today = state.clock.today(state.config.time_zone);
    let case = NewWarrantyCase {
        device_id: device.id,
        fault: body.fault.trim().to_string(),
        under_warranty: in_warranty(device.warranty_end, today),
        opened_by: Some(caller.actor.account_id),
    };
    let event = caller
        .event("warranty_case.open", "warranty_case", None)
        .in_org(device.provider_id)
        .details(
            serde_json::json!({ "device_id": device.id, "under_warranty": case.under_warranty }),
        );
    let opened = state
        .store
        .open_warranty_case(&case, state.clock.now(), event)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(with_timeline(&state, opened).await?),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WarrantyQuery {
    /// Only cases not closed.
    pub open: Option<bool>,
    pub device_id: Option<i64>,
    pub limit: Option<u32>,
}

/// Warranty cases, newest first (operator).
#[utoipa::path(get, path = "/api/v1/warranty-cases", tag = "leasing", security(("bearer" = [])),
    params(WarrantyQuery), responses((status = 200, body = Vec<WarrantyCaseView>)))]
async fn list_cases(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<WarrantyQuery>,
) -> Result<Json<Vec<WarrantyCaseView>>, ApiError> {
    caller.actor.require_operator()?;
    let cases = state
        .store
        .list_warranty_cases(
            q.open.unwrap_or(false),
            q.device_id,
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    Ok(Json(
        cases
            .into_iter()
            .map(|c| WarrantyCaseView::new(&state, c))
            .collect(),
    ))
}

/// One case with its timeline (operator).
#[utoipa::path(get, path = "/api/v1/warranty-cases/{id}", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = WarrantyCaseView), (status = 404, body = super::problem::Problem)))]
async fn get_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WarrantyCaseView>, ApiError> {
    caller.actor.require_operator()?;
    let case = state.store.warranty_case(id).await?;
    Ok(Json(with_timeline(&state, case).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarrantyMoveBody {
    /// `sent_to_supplier`, `repaired`, `replaced`, `rejected` or `closed`.
    pub state: String,
    /// The supplier's case number.
    pub supplier_reference: Option<String>,
    pub note: Option<String>,
}

/// Move a case on (operator). The phone leaves for the supplier only once wiped after the case
/// was opened (409 `wipe-required`); every other move out of order is 409
/// `warranty-transition`, saying what comes first.
#[utoipa::path(post, path = "/api/v1/warranty-cases/{id}/state", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = WarrantyMoveBody,
    responses((status = 200, body = WarrantyCaseView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn move_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<WarrantyMoveBody>,
) -> Result<Json<WarrantyCaseView>, ApiError> {
    caller.actor.require_operator()?;
    let to = WarrantyState::parse(&body.state)?;
    let step = WarrantyMove {
        to,
        supplier_reference: short_text("supplier_reference", body.supplier_reference)?,
        note: short_text("note", body.note)?,
        by: Some(caller.actor.account_id),
    };
    let case = state.store.warranty_case(id).await?;
    let device = state
        .store
        .device(Scope::Everything, case.device_id)
        .await?;
    let event = caller
        .event("warranty_case.move", "warranty_case", Some(id.to_string()))
        .in_org(device.provider_id);
    let moved = state
        .store
        .move_warranty_case(id, &step, state.clock.now(), event)
        .await?;
    Ok(Json(with_timeline(&state, moved).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapBody {
    /// A phone in stock, enrolled and compliant.
    pub replacement_device_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SwapView {
    pub case: WarrantyCaseView,
    /// The replacement's lease: the faulty phone's terms and holder.
    pub lease: LeaseView,
}

/// A replacement phone takes over the faulty phone's lease and holder (operator). The faulty
/// phone keeps its record and history.
#[utoipa::path(post, path = "/api/v1/warranty-cases/{id}/swap", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = SwapBody,
    responses((status = 200, body = SwapView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn swap(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<SwapBody>,
) -> Result<Json<SwapView>, ApiError> {
    caller.actor.require_operator()?;
    let event = caller.event("warranty_case.swap", "warranty_case", Some(id.to_string()));
    let (case, lease) = flows::warranty::swap(
        &state,
        id,
        body.replacement_device_id,
        caller.actor.account_id,
        event,
    )
    .await?;
    Ok(Json(SwapView {
        case: with_timeline(&state, case).await?,
        lease: LeaseView::new(&state, lease),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReminderQuery {
    /// Warranties ending within this many days; default 60.
    pub warranty_days: Option<u32>,
    /// Leases ending within this many days; default 30.
    pub lease_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WarrantyEndingView {
    pub device_id: i64,
    pub serial: String,
    pub provider_id: Option<i64>,
    pub warranty_end: NaiveDate,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemindersView {
    /// Phones in service whose warranty ends within the window, soonest first.
    pub warranties_ending: Vec<WarrantyEndingView>,
    /// Running leases that end within the window.
    pub leases_ending: Vec<LeaseView>,
}

/// What needs attention soon (operator): warranties ending within 60 days and leases ending
/// within 30 days.
#[utoipa::path(get, path = "/api/v1/reminders", tag = "leasing", security(("bearer" = [])),
    params(ReminderQuery), responses((status = 200, body = RemindersView)))]
async fn reminders(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ReminderQuery>,
) -> Result<Json<RemindersView>, ApiError> {
    caller.actor.require_operator()?;
    let today = state.clock.today(state.config.time_zone);
    let days =
        |d: Option<u32>, default: u32| Duration::days(i64::from(d.unwrap_or(default).min(3650)));
    let warranties = state
        .store
        .warranties_ending(today, today + days(q.warranty_days, 60), 1000)
        .await?;
    let leases = state
        .store
        .list_leases(
            Scope::Everything,
            &LeaseFilter {
                ending_by: Some(today + days(q.lease_days, 30)),
                limit: 1000,
                ..LeaseFilter::default()
            },
        )
        .await?;
    Ok(Json(RemindersView {
        warranties_ending: warranties
            .into_iter()
            .map(|w| WarrantyEndingView {
                device_id: w.device_id,
                serial: w.serial,
                provider_id: w.provider_id,
                warranty_end: w.warranty_end,
            })
            .collect(),
        leases_ending: leases
            .into_iter()
            .map(|l| LeaseView::new(&state, l))
            .collect(),
    }))
}
