//! Leases and holders: municipal IT leases phones to providers, the provider's IT contacts hand
//! them to holders and return them, and a phone changes hands only after the wipe the rules in
//! `domain::lease` and `domain::wipe_gate` demand. Manual wipes need two operator admins.

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
use super::{present, LeaseView};
use crate::domain::role::Scope;
use crate::domain::wipe_gate::check_manual_wipe;
use crate::flows;
use crate::flows::leasing::LeaseOrder;
use crate::store::leasing::{HolderPeriod, LeaseFilter, ManualWipe};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_lease, list_leases))
        .routes(routes!(get_lease))
        .routes(routes!(set_holder))
        .routes(routes!(return_device))
        .routes(routes!(device_history))
        .routes(routes!(record_manual_wipe))
        .routes(routes!(confirm_manual_wipe))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLeaseBody {
    pub device_id: i64,
    pub provider_id: i64,
    /// Default: today.
    pub starts_on: Option<NaiveDate>,
    pub ends_on: Option<NaiveDate>,
    /// In kronor, at most two decimals. May be left out only when the lease replaces a
    /// written-off phone's (through `request_id`): its terms carry over.
    pub monthly_price_sek: Option<f64>,
    /// Mobile data included each month; default 100 GB.
    pub data_gb: Option<u32>,
    /// Hand the phone straight to this provider user; without it the phone joins the pool.
    pub holder_id: Option<i64>,
    /// The provider's phone request this lease fulfils (in part).
    pub request_id: Option<i64>,
}

/// Lease a phone to a provider (operator). Refused with 409 while the phone is lost, in repair,
/// retired, leased, or not wiped since its last assignment (`wipe-required`), or when the
/// provider's contract is not running.
#[utoipa::path(post, path = "/api/v1/leases", tag = "leasing", security(("bearer" = [])),
    request_body = NewLeaseBody,
    responses((status = 201, body = LeaseView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn create_lease(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewLeaseBody>,
) -> Result<(StatusCode, Json<LeaseView>), ApiError> {
    caller.actor.require_operator()?;
    let order = LeaseOrder {
        device_id: body.device_id,
        provider_id: body.provider_id,
        starts_on: body.starts_on,
        ends_on: body.ends_on,
        monthly_price_sek: body.monthly_price_sek,
        data_gb: body.data_gb,
        holder_id: body.holder_id,
        request_id: body.request_id,
    };
    let event = caller.event("lease.create", "lease", None);
    let created = flows::leasing::lease(&state, &order, caller.actor.account_id, event).await?;
    Ok((StatusCode::CREATED, Json(LeaseView::new(&state, created))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeaseQuery {
    pub provider_id: Option<i64>,
    pub device_id: Option<i64>,
    /// Only leases still running.
    pub open: Option<bool>,
    /// Only running leases that end within this many days (the reminder list).
    pub ending_within_days: Option<u32>,
    /// Leases with ids below this (the cursor; newest first).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// Leases, newest first; a provider's admin sees its own.
#[utoipa::path(get, path = "/api/v1/leases", tag = "leasing", security(("bearer" = [])),
    params(LeaseQuery), responses((status = 200, body = Vec<LeaseView>)))]
async fn list_leases(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LeaseQuery>,
) -> Result<Json<Vec<LeaseView>>, ApiError> {
    caller.actor.may_manage_phones()?;
    let today = state.clock.today(state.config.time_zone);
    let filter = LeaseFilter {
        provider_id: q.provider_id,
        device_id: q.device_id,
        open_only: q.open.unwrap_or(false),
        ending_by: q
            .ending_within_days
            .map(|d| today + Duration::days(i64::from(d.min(3650)))),
        before_id: q.before,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let leases = state
        .store
        .list_leases(caller.actor.scope(), &filter)
        .await?;
    Ok(Json(
        leases
            .into_iter()
            .map(|l| LeaseView::new(&state, l))
            .collect(),
    ))
}

/// One lease.
#[utoipa::path(get, path = "/api/v1/leases/{id}", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = LeaseView), (status = 404, body = super::problem::Problem)))]
async fn get_lease(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LeaseView>, ApiError> {
    caller.actor.may_manage_phones()?;
    let lease = state.store.lease(caller.actor.scope(), id).await?;
    Ok(Json(LeaseView::new(&state, lease)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HolderBody {
    /// The provider user to hand the phone to; `null` puts it back in the provider's pool.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub holder_id: Option<Option<i64>>,
}

/// Hand a leased phone to a holder or back to the pool (operator or the provider's admin). A
/// new holder after another needs the phone wiped and enrolled again first (`wipe-required`).
#[utoipa::path(put, path = "/api/v1/devices/{id}/holder", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = HolderBody,
    responses((status = 200, body = LeaseView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn set_holder(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<HolderBody>,
) -> Result<Json<LeaseView>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    caller.actor.may_manage_phones()?;
    let Some(holder) = body.holder_id else {
        return Err(invalid("holder_id", "give a holder, or null for the pool"));
    };
    let event = caller
        .event("lease.holder", "device", Some(id.to_string()))
        .in_org(device.provider_id);
    let lease = flows::leasing::set_holder(&state, id, device.provider_id, holder, event).await?;
    Ok(Json(LeaseView::new(&state, lease)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnView {
    pub lease: LeaseView,
    /// The wipe queued for the phone; it returns to stock once the phone confirms it.
    pub wipe_command_id: i64,
}

/// Return a leased phone (the provider's admin, or the operator for it): the lease ends, the
/// holder is cleared, and a wipe is queued; the phone waits for it.
#[utoipa::path(post, path = "/api/v1/devices/{id}/return", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ReturnView), (status = 404, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem)))]
async fn return_device(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ReturnView>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    caller.actor.may_manage_phones()?;
    let provider = if caller.actor.role.is_operator() {
        device.provider_id.unwrap_or_default()
    } else {
        caller.actor.org_id
    };
    let event = caller
        .event("lease.return", "device", Some(id.to_string()))
        .in_org(device.provider_id);
    let (lease, wipe) =
        flows::leasing::return_phone(&state, id, provider, caller.actor.account_id, event).await?;
    Ok(Json(ReturnView {
        lease: LeaseView::new(&state, lease),
        wipe_command_id: wipe,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HolderView {
    pub lease_id: i64,
    pub account_id: i64,
    pub display_name: String,
    pub started_at: DateTime<FixedOffset>,
    pub ended_at: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ManualWipeView {
    pub id: i64,
    pub device_id: i64,
    pub reason: String,
    pub recorded_by: i64,
    pub recorded_at: DateTime<FixedOffset>,
    pub confirmed_by: Option<i64>,
    pub confirmed_at: Option<DateTime<FixedOffset>>,
}

impl ManualWipeView {
    fn new(state: &AppState, w: ManualWipe) -> Self {
        ManualWipeView {
            id: w.id,
            device_id: w.device_id,
            reason: w.reason,
            recorded_by: w.recorded_by,
            recorded_at: state.local(w.recorded_at),
            confirmed_by: w.confirmed_by,
            confirmed_at: w.confirmed_at.map(|t| state.local(t)),
        }
    }
}

/// Whether the phone may get a new holder or provider, and if not, what must happen first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WipeGateView {
    pub ready: bool,
    /// `in_use` (someone holds it now), `not_sent`, `not_acknowledged` or `not_reenrolled`.
    pub missing: Option<String>,
    pub explanation: Option<String>,
    /// How the last wipe went out to an iPhone: `return_to_service` (iOS 17 and later: it
    /// sets itself up and enrolls again on its own) or `erase_only` (older iOS: enroll it
    /// again by hand); none for other phones.
    pub wipe_delivered_as: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceHistoryView {
    /// Every lease of the phone, newest first.
    pub leases: Vec<LeaseView>,
    /// Who held it, when, oldest first.
    pub holders: Vec<HolderView>,
    pub wipe_gate: WipeGateView,
    pub manual_wipes: Vec<ManualWipeView>,
}

/// A phone's leases and holders, and whether it may change hands now (operator, or the
/// provider's admin for its phones).
#[utoipa::path(get, path = "/api/v1/devices/{id}/history", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = DeviceHistoryView), (status = 404, body = super::problem::Problem)))]
async fn device_history(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeviceHistoryView>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    caller.actor.may_manage_phones()?;
    let scope = caller.actor.scope();
    let leases = state
        .store
        .list_leases(
            scope,
            &LeaseFilter {
                device_id: Some(device.id),
                limit: 1000,
                ..LeaseFilter::default()
            },
        )
        .await?;
    let visible: std::collections::HashSet<i64> = leases.iter().map(|l| l.id).collect();
    let holders: Vec<HolderPeriod> = state
        .store
        .holder_history(device.id)
        .await?
        .into_iter()
        .filter(|h| visible.contains(&h.lease_id))
        .collect();
    let evidence = state.store.wipe_evidence(device.id).await?;
    let gate = crate::domain::lease::ready_for_someone_new(device.holder_id, &evidence);
    let manual = state.store.manual_wipes(device.id).await?;
    let delivered_as = state.store.wipe_delivery(device.id).await?;
    Ok(Json(DeviceHistoryView {
        leases: leases
            .into_iter()
            .map(|l| LeaseView::new(&state, l))
            .collect(),
        holders: holders
            .into_iter()
            .map(|h| HolderView {
                lease_id: h.lease_id,
                account_id: h.account_id,
                display_name: h.display_name,
                started_at: state.local(h.started_at),
                ended_at: h.ended_at.map(|t| state.local(t)),
            })
            .collect(),
        wipe_gate: WipeGateView {
            ready: gate.is_ok(),
            missing: gate.err().map(|m| m.code().to_string()),
            explanation: gate.err().map(|m| m.explain().to_string()),
            wipe_delivered_as: delivered_as,
        },
        manual_wipes: if scope == Scope::Everything {
            manual
                .into_iter()
                .map(|w| ManualWipeView::new(&state, w))
                .collect()
        } else {
            Vec::new()
        },
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualWipeBody {
    /// Why the phone cannot be wiped remotely (dead, broken), at least 10 characters.
    pub reason: String,
}

/// Record that a phone which cannot be wiped remotely was wiped by hand (operator admin). It
/// counts only once a second operator admin confirms.
#[utoipa::path(post, path = "/api/v1/devices/{id}/manual-wipe", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ManualWipeBody,
    responses((status = 201, body = ManualWipeView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn record_manual_wipe(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ManualWipeBody>,
) -> Result<(StatusCode, Json<ManualWipeView>), ApiError> {
    caller.actor.require_operator_admin()?;
    let device = state.store.device(Scope::Everything, id).await?;
    let reason = body.reason.trim();
    // Only the reason is judged here; the second admin is checked on confirmation.
    if let Err(why) = check_manual_wipe(0, reason, 1) {
        return Err(invalid("reason", why));
    }
    if reason.chars().count() > 1000 {
        return Err(invalid("reason", "at most 1000 characters"));
    }
    let event = caller
        .event("device.manual_wipe.record", "device", Some(id.to_string()))
        .in_org(device.provider_id)
        .details(serde_json::json!({ "reason": reason }));
    let wipe = state
        .store
        .record_manual_wipe(
            id,
            reason,
            caller.actor.account_id,
            state.clock.now(),
            event,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(ManualWipeView::new(&state, wipe))))
}

/// Confirm a recorded manual wipe (a second operator admin, not the one who recorded it): the
/// phone counts as wiped, its identity is revoked and its queue purged.
#[utoipa::path(post, path = "/api/v1/devices/{id}/manual-wipe/confirm", tag = "leasing", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ManualWipeView), (status = 409, body = super::problem::Problem)))]
async fn confirm_manual_wipe(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ManualWipeView>, ApiError> {
    caller.actor.require_operator_admin()?;
    let device = state.store.device(Scope::Everything, id).await?;
    let event = caller
        .event("device.manual_wipe.confirm", "device", Some(id.to_string()))
        .in_org(device.provider_id);
    let wipe =
        flows::leasing::confirm_manual_wipe(&state, id, caller.actor.account_id, event).await?;
    Ok(Json(ManualWipeView::new(&state, wipe)))
}
