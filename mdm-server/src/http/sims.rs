//! SIM subscriptions (operator): register cards, put them in phones, follow their status
//! through blocks and re-activation, and see which phone held which SIM when. The rules are in
//! `domain::subscription`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::present;
use super::problem::{invalid, ApiError, ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::domain::lease::INCLUDED_DATA_GB;
use crate::domain::role::Scope;
use crate::domain::subscription::{check_subscription, Iccid, SimStatus};
use crate::store::subscriptions::{NewSim, Sim, SimFilter, SimPeriod};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_sim, list_sims))
        .routes(routes!(get_sim))
        .routes(routes!(set_status))
        .routes(routes!(place_sim))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SimPeriodView {
    pub sim_id: i64,
    pub iccid: String,
    pub device_id: i64,
    pub started_at: DateTime<FixedOffset>,
    pub ended_at: Option<DateTime<FixedOffset>>,
}

impl SimPeriodView {
    pub fn new(state: &AppState, p: SimPeriod) -> Self {
        SimPeriodView {
            sim_id: p.sim_id,
            iccid: p.iccid,
            device_id: p.device_id,
            started_at: state.local(p.started_at),
            ended_at: p.ended_at.map(|t| state.local(t)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SimView {
    pub id: i64,
    pub iccid: String,
    pub phone_number: String,
    pub carrier: String,
    pub plan: String,
    /// Mobile data included each month.
    pub data_gb: i64,
    /// `active`, `block_requested`, `blocked` or `terminated`.
    pub status: String,
    pub device_id: Option<i64>,
    /// A found phone's SIM waiting to be re-activated with the phone company.
    pub reactivation_requested_at: Option<DateTime<FixedOffset>>,
    pub created_at: DateTime<FixedOffset>,
    pub updated_at: DateTime<FixedOffset>,
    /// Which phones held it, oldest first (single-SIM answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<SimPeriodView>>,
}

impl SimView {
    fn new(state: &AppState, s: Sim) -> Self {
        SimView {
            id: s.id,
            iccid: s.iccid,
            phone_number: s.phone_number,
            carrier: s.carrier,
            plan: s.plan,
            data_gb: s.data_gb,
            status: s.status.as_str().to_string(),
            device_id: s.device_id,
            reactivation_requested_at: s.reactivation_requested_at.map(|t| state.local(t)),
            created_at: state.local(s.created_at),
            updated_at: state.local(s.updated_at),
            history: None,
        }
    }
}

async fn with_history(state: &AppState, s: Sim) -> Result<SimView, ApiError> {
    let periods = state.store.sim_periods(Some(s.id), None).await?;
    let mut view = SimView::new(state, s);
    view.history = Some(
        periods
            .into_iter()
            .map(|p| SimPeriodView::new(state, p))
            .collect(),
    );
    Ok(view)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSimBody {
    /// 19 or 20 digits starting with 89, with a valid check digit.
    pub iccid: String,
    /// E.164.
    pub phone_number: String,
    /// The phone company.
    pub carrier: String,
    pub plan: String,
    /// Default 100.
    pub data_gb: Option<u32>,
}

/// Register a SIM (operator). It starts active and in no phone.
#[utoipa::path(post, path = "/api/v1/sims", tag = "leasing", security(("bearer" = [])),
    request_body = NewSimBody,
    responses((status = 201, body = SimView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn create_sim(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSimBody>,
) -> Result<(StatusCode, Json<SimView>), ApiError> {
    caller.actor.require_operator()?;
    let iccid = Iccid::parse(&body.iccid)?;
    let data_gb = body.data_gb.unwrap_or(INCLUDED_DATA_GB);
    let number = check_subscription(&body.phone_number, &body.carrier, &body.plan, data_gb)?;
    let sim = NewSim {
        iccid: iccid.as_str().to_string(),
        phone_number: number.as_str().to_string(),
        carrier: body.carrier.trim().to_string(),
        plan: body.plan.trim().to_string(),
        data_gb,
    };
    let event = caller
        .event("sim.create", "sim", None)
        .details(serde_json::json!({ "iccid": sim.iccid, "phone_number": sim.phone_number }));
    let created = state
        .store
        .create_sim(&sim, state.clock.now(), event)
        .await?;
    Ok((StatusCode::CREATED, Json(SimView::new(&state, created))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SimQuery {
    pub status: Option<String>,
    pub device_id: Option<i64>,
    /// Only SIMs waiting for re-activation.
    pub reactivation_requested: Option<bool>,
    /// SIMs with ids above this (the cursor).
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

/// SIMs, in id order (operator).
#[utoipa::path(get, path = "/api/v1/sims", tag = "leasing", security(("bearer" = [])),
    params(SimQuery), responses((status = 200, body = Vec<SimView>)))]
async fn list_sims(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SimQuery>,
) -> Result<Json<Vec<SimView>>, ApiError> {
    caller.actor.require_operator()?;
    let filter = SimFilter {
        status: q
            .status
            .as_deref()
            .map(SimStatus::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid-query", e.message().to_string()))?,
        device_id: q.device_id,
        reactivation_requested: q.reactivation_requested.unwrap_or(false),
        after_id: q.after,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let sims = state.store.list_sims(&filter).await?;
    Ok(Json(
        sims.into_iter().map(|s| SimView::new(&state, s)).collect(),
    ))
}

/// One SIM with the phones that held it.
#[utoipa::path(get, path = "/api/v1/sims/{id}", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = SimView), (status = 404, body = super::problem::Problem)))]
async fn get_sim(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SimView>, ApiError> {
    caller.actor.require_operator()?;
    let sim = state.store.sim(id).await?;
    Ok(Json(with_history(&state, sim).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimStatusBody {
    /// `active` (re-activated), `block_requested`, `blocked` (the phone company confirmed the
    /// block) or `terminated`.
    pub status: String,
}

/// Move a SIM's status (operator). Refused with 409 and what must happen first when the move
/// is not allowed.
#[utoipa::path(post, path = "/api/v1/sims/{id}/status", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = SimStatusBody,
    responses((status = 200, body = SimView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn set_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<SimStatusBody>,
) -> Result<Json<SimView>, ApiError> {
    caller.actor.require_operator()?;
    let to = SimStatus::parse(&body.status)?;
    let event = caller.event("sim.status", "sim", Some(id.to_string()));
    let sim = state
        .store
        .set_sim_status(id, to, state.clock.now(), event)
        .await?;
    Ok(Json(with_history(&state, sim).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceSimBody {
    /// The phone the SIM goes in; `null` takes it out.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub device_id: Option<Option<i64>>,
}

/// Put a SIM in a phone or take it out (operator). A SIM in another phone, or a phone that
/// holds another SIM, is refused with 409.
#[utoipa::path(put, path = "/api/v1/sims/{id}/device", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = PlaceSimBody,
    responses((status = 200, body = SimView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn place_sim(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<PlaceSimBody>,
) -> Result<Json<SimView>, ApiError> {
    caller.actor.require_operator()?;
    let Some(device_id) = body.device_id else {
        return Err(invalid(
            "device_id",
            "give a device, or null to take the SIM out",
        ));
    };
    if let Some(d) = device_id {
        if state.store.device(Scope::Everything, d).await.is_err() {
            return Err(invalid("device_id", "no such device"));
        }
    }
    let event = caller.event("sim.place", "sim", Some(id.to_string()));
    let sim = state
        .store
        .place_sim(id, device_id, state.clock.now(), event)
        .await?;
    Ok(Json(with_history(&state, sim).await?))
}
