//! The device inventory: register, list with filters and cursor paging, view, update.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{checked, ApiError, ApiJson, ApiPath, ApiQuery, Fields};
use super::AppState;
use super::{catalogue, present};
use crate::domain::device::{check_warranty, DeviceStatus, Imei, Platform, Serial};
use crate::domain::organisation::{optional_text, OrgKind};
use crate::store::{Device, DeviceChange, DeviceFilter, DeviceModel, NewDevice};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, register_device))
        .routes(routes!(get_device, update_device))
}

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    pub id: i64,
    pub serial: String,
    pub imei: String,
    pub platform: Platform,
    pub model: String,
    pub model_id: i64,
    pub status: DeviceStatus,
    pub provider_id: Option<i64>,
    /// The provider user holding the phone; `null` while it is in stock or the provider's pool.
    pub holder_id: Option<i64>,
    /// An ICCID the phone reported that is not its recorded SIM's (flag `sim_mismatch`).
    pub reported_iccid_mismatch: Option<String>,
    pub purchase_date: Option<NaiveDate>,
    pub warranty_end: Option<NaiveDate>,
    pub supplier: Option<String>,
    /// Conditions that need attention, such as `unsupported_model`.
    pub flags: Vec<String>,
    pub enrolled_at: Option<DateTime<FixedOffset>>,
    pub last_checkin_at: Option<DateTime<FixedOffset>>,
    /// What the device last reported: OS, SIM, battery, storage, apps, PIN, encryption.
    #[schema(value_type = Option<Object>)]
    pub reported: Option<serde_json::Value>,
    pub created_at: DateTime<FixedOffset>,
    pub updated_at: DateTime<FixedOffset>,
}

impl DeviceView {
    fn new(state: &AppState, d: Device, supported: &HashSet<i64>) -> Self {
        let mut flags = Vec::new();
        if !supported.contains(&d.model_id) {
            flags.push("unsupported_model".to_string());
        }
        if d.iccid_mismatch.is_some() {
            flags.push("sim_mismatch".to_string());
        }
        DeviceView {
            id: d.id,
            serial: d.serial,
            imei: d.imei,
            platform: d.platform,
            model: d.model_name,
            model_id: d.model_id,
            status: d.status,
            provider_id: d.provider_id,
            holder_id: d.holder_id,
            reported_iccid_mismatch: d.iccid_mismatch,
            purchase_date: d.purchase_date,
            warranty_end: d.warranty_end,
            supplier: d.supplier,
            flags,
            enrolled_at: d.enrolled_at.map(|t| state.local(t)),
            last_checkin_at: d.last_checkin_at.map(|t| state.local(t)),
            reported: d
                .facts
                .as_deref()
                .and_then(|f| serde_json::from_str(f).ok()),
            created_at: state.local(d.created_at),
            updated_at: state.local(d.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePage {
    pub items: Vec<DeviceView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    /// in_stock, leased, in_repair, lost, awaiting_wipe or retired.
    pub status: Option<String>,
    pub provider_id: Option<i64>,
    pub model_id: Option<i64>,
    /// android or ios.
    pub platform: Option<String>,
    /// The beginning of a serial number, IMEI or iPhone UDID, or the end of an IMEI (case
    /// ignored).
    pub q: Option<String>,
    /// Only phones that reported another SIM than the one recorded for them.
    pub sim_mismatch: Option<bool>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn encode_cursor(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("d:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("d:")?
        .parse()
        .ok()
}

/// Devices the caller may see, filtered, oldest first, one page at a time.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), params(DeviceQuery),
    responses((status = 200, body = DevicePage), (status = 422, body = super::problem::Problem)))]
async fn list_devices(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> Result<Json<DevicePage>, ApiError> {
    let mut fields = Fields::default();
    let status = query
        .status
        .as_deref()
        .map(|s| fields.check(DeviceStatus::parse(s)));
    let platform = query
        .platform
        .as_deref()
        .map(|p| fields.check(Platform::parse(p)));
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        fields.push("limit", format!("must be between 1 and {MAX_PAGE}"));
    }
    let after_id = match query.cursor.as_deref() {
        None => None,
        Some(c) => {
            let id = decode_cursor(c);
            if id.is_none() {
                fields.push("cursor", "is not a cursor this server gave out");
            }
            id
        }
    };
    // People copy IMEIs with spaces in them; serials never have any.
    let text: Option<String> = query
        .q
        .as_deref()
        .map(|t| t.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|t| !t.is_empty());
    if text.as_ref().is_some_and(|t| t.chars().count() > 64) {
        fields.push("q", "must be at most 64 characters");
    }
    if text
        .as_ref()
        .is_some_and(|t| t.chars().any(char::is_control))
    {
        fields.push("q", "must not contain control characters");
    }
    fields.finish()?;
    let filter = DeviceFilter {
        scope: caller.actor.scope().org(),
        status: status.flatten(),
        provider_id: query.provider_id,
        model_id: query.model_id,
        platform: platform.flatten(),
        text,
        sim_mismatch: query.sim_mismatch.unwrap_or(false),
        after_id,
        limit: limit + 1,
    };
    let mut devices = state.store.list_devices(&filter).await?;
    let next_cursor = if devices.len() > limit as usize {
        devices.truncate(limit as usize);
        devices.last().map(|d| encode_cursor(d.id))
    } else {
        None
    };
    let (_, supported) = catalogue(&state).await?;
    Ok(Json(DevicePage {
        items: devices
            .into_iter()
            .map(|d| DeviceView::new(&state, d, &supported))
            .collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeviceBody {
    /// android or ios.
    pub platform: String,
    /// A model name from the catalogue for that platform.
    pub model: String,
    pub serial: String,
    pub imei: String,
    pub purchase_date: Option<NaiveDate>,
    pub warranty_end: Option<NaiveDate>,
    pub supplier: Option<String>,
    /// The provider the phone is placed with, if any.
    pub provider_id: Option<i64>,
}

async fn check_provider(
    state: &AppState,
    fields: &mut Fields,
    provider_id: Option<i64>,
) -> Result<(), ApiError> {
    if let Some(id) = provider_id {
        match state.store.organisation(id).await {
            Ok(org) if org.kind == OrgKind::Provider => {}
            Ok(_) | Err(crate::store::StoreError::NotFound) => {
                fields.push("provider_id", "no such provider")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn check_supplier(fields: &mut Fields, supplier: Option<&str>) -> Option<String> {
    fields
        .check(optional_text("supplier", supplier, 200))
        .flatten()
}

/// Register one phone (operator). It starts `in_stock`.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), request_body = NewDeviceBody,
    responses((status = 201, body = DeviceView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn register_device(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewDeviceBody>,
) -> Result<(StatusCode, Json<DeviceView>), ApiError> {
    caller.actor.require_operator()?;
    let (models, supported) = catalogue(&state).await?;
    let mut fields = Fields::default();
    let serial = fields.check(Serial::parse(&body.serial));
    let imei = fields.check(Imei::parse(&body.imei));
    let platform = fields.check(Platform::parse(&body.platform));
    let model_id = platform.and_then(|p| match DeviceModel::find_in(&models, p, &body.model) {
        Ok(m) => Some(m.id),
        Err(message) => {
            fields.push("model", message);
            None
        }
    });
    fields.check(check_warranty(body.purchase_date, body.warranty_end));
    let supplier = check_supplier(&mut fields, body.supplier.as_deref());
    check_provider(&state, &mut fields, body.provider_id).await?;
    fields.finish()?;
    let device = NewDevice {
        serial: checked(serial)?,
        imei: checked(imei)?,
        model_id: checked(model_id)?,
        platform: checked(platform)?,
        provider_id: body.provider_id,
        purchase_date: body.purchase_date,
        warranty_end: body.warranty_end,
        supplier,
    };
    let event = caller
        .event("device.register", "device", None)
        .in_org(device.provider_id)
        .details(
            serde_json::json!({ "serial": device.serial.as_str(), "imei": device.imei.as_str() }),
        );
    let created = state
        .store
        .create_device(&device, state.clock.now(), event)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(DeviceView::new(&state, created, &supported)),
    ))
}

/// One device, if the caller may see it.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = DeviceView), (status = 404, body = super::problem::Problem)))]
async fn get_device(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeviceView>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    let (_, supported) = catalogue(&state).await?;
    Ok(Json(DeviceView::new(&state, device, &supported)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceChangeBody {
    /// A model name from the catalogue for the device's platform.
    pub model: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>)]
    pub purchase_date: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>)]
    pub warranty_end: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub supplier: Option<Option<String>>,
    /// Accepted only unchanged: a phone moves between providers through leases and returns
    /// (409 `lease-required` otherwise).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub provider_id: Option<Option<i64>>,
}

/// Correct a device's record (operator). Its serial and IMEI identify it and do not change.
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = DeviceChangeBody,
    responses((status = 200, body = DeviceView), (status = 404, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn update_device(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<DeviceChangeBody>,
) -> Result<Json<DeviceView>, ApiError> {
    let current = state.store.device(caller.actor.scope(), id).await?;
    caller.actor.require_operator()?;
    if let Some(to) = body.provider_id {
        crate::domain::lease::check_record_move(current.provider_id, to)
            .map_err(crate::store::StoreError::Refused)?;
    }
    let (models, supported) = catalogue(&state).await?;
    let mut fields = Fields::default();
    let model_id = match body
        .model
        .as_deref()
        .map(|name| DeviceModel::find_in(&models, current.platform, name))
    {
        None => None,
        Some(Ok(m)) => Some(m.id),
        Some(Err(message)) => {
            fields.push("model", message);
            None
        }
    };
    let purchase = body.purchase_date.unwrap_or(current.purchase_date);
    let warranty = body.warranty_end.unwrap_or(current.warranty_end);
    fields.check(check_warranty(purchase, warranty));
    let supplier = body
        .supplier
        .as_ref()
        .map(|s| check_supplier(&mut fields, s.as_deref()));
    fields.finish()?;
    let change = DeviceChange {
        model_id,
        purchase_date: body.purchase_date,
        warranty_end: body.warranty_end,
        supplier,
    };
    let event = caller
        .event("device.update", "device", Some(id.to_string()))
        .in_org(current.provider_id)
        .details(serde_json::json!({
            "model_id": change.model_id,
            "purchase_date": change.purchase_date,
            "warranty_end": change.warranty_end,
        }));
    let updated = state
        .store
        .update_device(id, &change, state.clock.now(), vec![event])
        .await?;
    Ok(Json(DeviceView::new(&state, updated, &supported)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_cursors_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(4711)), Some(4711));
        assert_eq!(decode_cursor("not-a-cursor"), None);
        assert_eq!(
            decode_cursor(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("x:1")),
            None
        );
    }
}
