//! Phone requests: a provider's IT contact asks for phones; municipal IT fulfils them by leasing
//! phones against the request (`POST /api/v1/leases` with `request_id`) before the working-day
//! deadline (`domain::phone_request`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{invalid, ApiError, ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::domain::phone_request::{self, RequestState};
use crate::domain::role::Role;
use crate::store::leasing::{NewPhoneRequest, PhoneRequest, RequestFilter};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_request, list_requests))
        .routes(routes!(get_request))
        .routes(routes!(cancel_request))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneRequestView {
    pub id: i64,
    pub provider_id: i64,
    pub quantity: i64,
    /// Phones leased against it so far.
    pub fulfilled: i64,
    pub model_id: Option<i64>,
    pub needed_by: Option<NaiveDate>,
    pub delivery_note: String,
    /// The lease of a written-off phone this request replaces.
    pub replaces_lease_id: Option<i64>,
    /// `open`, `fulfilled` or `cancelled`.
    pub state: String,
    pub created_by: Option<i64>,
    pub created_at: DateTime<FixedOffset>,
    /// When the phones must be ready: the configuration deadline in working days.
    pub due_at: DateTime<FixedOffset>,
    /// Open and past its deadline.
    pub overdue: bool,
    pub closed_at: Option<DateTime<FixedOffset>>,
}

impl PhoneRequestView {
    pub fn new(state: &AppState, r: PhoneRequest) -> Self {
        let overdue = phone_request::is_overdue(r.state, r.due_at, state.clock.now());
        PhoneRequestView {
            id: r.id,
            provider_id: r.provider_id,
            quantity: r.quantity,
            fulfilled: r.fulfilled,
            model_id: r.model_id,
            needed_by: r.needed_by,
            delivery_note: r.delivery_note,
            replaces_lease_id: r.replaces_lease_id,
            state: r.state.as_str().to_string(),
            created_by: r.created_by,
            created_at: state.local(r.created_at),
            due_at: state.local(r.due_at),
            overdue,
            closed_at: r.closed_at.map(|t| state.local(t)),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequestBody {
    /// Required for municipal IT asking on a provider's behalf; a provider's admin asks for its
    /// own organisation.
    pub provider_id: Option<i64>,
    pub quantity: u32,
    /// The preferred model (catalogue id).
    pub model_id: Option<i64>,
    pub needed_by: Option<NaiveDate>,
    /// Where and to whom the phones go, at most 1000 characters.
    pub delivery_note: Option<String>,
}

/// Ask for phones (a provider's admin for its own organisation, or municipal IT for one).
#[utoipa::path(post, path = "/api/v1/phone-requests", tag = "leasing", security(("bearer" = [])),
    request_body = NewRequestBody,
    responses((status = 201, body = PhoneRequestView), (status = 422, body = super::problem::Problem)))]
async fn create_request(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewRequestBody>,
) -> Result<(StatusCode, Json<PhoneRequestView>), ApiError> {
    let provider_id =
        match caller.actor.role {
            // A provider asks for itself; naming another provider is a mistake to point out, not
            // to quietly turn into a request of its own.
            Role::ProviderAdmin => match body.provider_id {
                Some(named) if named != caller.actor.org_id => return Err(invalid(
                    "provider_id",
                    "a provider asks for phones for itself: leave provider_id out or give your own",
                )),
                _ => caller.actor.org_id,
            },
            Role::OperatorAdmin | Role::OperatorStaff => body
                .provider_id
                .ok_or_else(|| invalid("provider_id", "say which provider the phones are for"))?,
            Role::ProviderUser => return Err(ApiError::forbidden("your role does not allow this")),
        };
    crate::flows::leasing::named_provider(&state, provider_id).await?;
    if let Some(model) = body.model_id {
        if !state
            .store
            .list_models()
            .await?
            .iter()
            .any(|m| m.id == model)
        {
            return Err(invalid("model_id", "no such model in the catalogue"));
        }
    }
    let note = body.delivery_note.unwrap_or_default();
    phone_request::check_request(
        body.quantity,
        body.needed_by,
        note.trim(),
        state.clock.today(state.config.time_zone),
    )?;
    let now = state.clock.now();
    let request = NewPhoneRequest {
        provider_id,
        quantity: body.quantity,
        model_id: body.model_id,
        needed_by: body.needed_by,
        delivery_note: note.trim().to_string(),
        due_at: state.phone_request_due(now),
        created_by: Some(caller.actor.account_id),
    };
    let event = caller
        .event("phone_request.create", "phone_request", None)
        .in_org(Some(provider_id))
        .details(serde_json::json!({ "quantity": body.quantity, "due_at": request.due_at }));
    let created = state.store.create_request(&request, now, event).await?;
    Ok((
        StatusCode::CREATED,
        Json(PhoneRequestView::new(&state, created)),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestQuery {
    pub provider_id: Option<i64>,
    /// `open`, `fulfilled` or `cancelled`.
    pub state: Option<String>,
    /// Only open requests past their deadline, the most overdue first.
    pub overdue: Option<bool>,
    pub limit: Option<u32>,
}

/// Phone requests with their due dates, newest first (or the overdue list); a provider's
/// admin sees its own.
#[utoipa::path(get, path = "/api/v1/phone-requests", tag = "leasing", security(("bearer" = [])),
    params(RequestQuery), responses((status = 200, body = Vec<PhoneRequestView>)))]
async fn list_requests(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RequestQuery>,
) -> Result<Json<Vec<PhoneRequestView>>, ApiError> {
    caller.actor.may_manage_phones()?;
    let filter = RequestFilter {
        provider_id: q.provider_id,
        state: q
            .state
            .as_deref()
            .map(RequestState::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid-query", e.message().to_string()))?,
        overdue_at: q.overdue.unwrap_or(false).then(|| state.clock.now()),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let requests = state
        .store
        .list_requests(caller.actor.scope(), &filter)
        .await?;
    Ok(Json(
        requests
            .into_iter()
            .map(|r| PhoneRequestView::new(&state, r))
            .collect(),
    ))
}

/// One phone request.
#[utoipa::path(get, path = "/api/v1/phone-requests/{id}", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = PhoneRequestView), (status = 404, body = super::problem::Problem)))]
async fn get_request(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<PhoneRequestView>, ApiError> {
    caller.actor.may_manage_phones()?;
    let request = state.store.request(caller.actor.scope(), id).await?;
    Ok(Json(PhoneRequestView::new(&state, request)))
}

/// Withdraw an open request (the provider's admin, or municipal IT).
#[utoipa::path(post, path = "/api/v1/phone-requests/{id}/cancel", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = PhoneRequestView), (status = 409, body = super::problem::Problem)))]
async fn cancel_request(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<PhoneRequestView>, ApiError> {
    let request = state.store.request(caller.actor.scope(), id).await?;
    caller.actor.may_manage_phones()?;
    let event = caller
        .event(
            "phone_request.cancel",
            "phone_request",
            Some(id.to_string()),
        )
        .in_org(Some(request.provider_id));
    let cancelled = state
        .store
        .cancel_request(id, state.clock.now(), event)
        .await?;
    Ok(Json(PhoneRequestView::new(&state, cancelled)))
}
