//! The standard phone: the operator's policy, provider and device overrides, the app catalogue
//! they name, and each phone's effective policy with where every setting came from. The merge
//! and the rules live in the `profiles` crate.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use profiles::apps::{CatalogueApp, Platform as ProfilePlatform};
use profiles::policy::{effective, EffectivePolicy, PolicyLayer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{ApiError, ApiJson, ApiPath, FieldError};
use super::{signed_profile, AppState};
use crate::domain::organisation::OrgKind;
use crate::store::policies::{LayerScope, PolicyLayers};
use crate::store::Device;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_operator_policy, set_operator_policy))
        .routes(routes!(
            get_provider_policy,
            set_provider_policy,
            clear_provider_policy
        ))
        .routes(routes!(
            get_device_policy,
            set_device_policy,
            clear_device_policy
        ))
        .routes(routes!(effective_policy))
        .routes(routes!(device_compliance))
        .routes(routes!(compliance_history))
        .routes(routes!(compliance_summary))
        .routes(routes!(device_profile))
        .routes(routes!(list_apps))
        .routes(routes!(put_app))
        .routes(routes!(app_licences))
}

/// A policy layer as stored: only the settings it sets.
#[derive(Debug, Serialize, ToSchema)]
pub struct LayerView {
    /// `operator`, `provider` or `device`.
    pub scope: String,
    pub scope_id: Option<i64>,
    #[schema(value_type = Object)]
    pub layer: serde_json::Value,
}

fn layer_view(scope: LayerScope, layer: Option<PolicyLayer>) -> LayerView {
    let (kind, id) = scope.parts();
    LayerView {
        scope: kind.to_string(),
        scope_id: (scope != LayerScope::Operator).then_some(id),
        layer: serde_json::to_value(layer.unwrap_or_default()).unwrap_or_default(),
    }
}

/// The layer as stored (empty when none is set).
async fn stored_layer(state: &AppState, scope: LayerScope) -> Result<Json<LayerView>, ApiError> {
    Ok(Json(layer_view(
        scope,
        state.store.policy_layer(scope).await?,
    )))
}

/// The layer checked against the rules and the app catalogue.
async fn checked_layer(state: &AppState, layer: &PolicyLayer) -> Result<(), ApiError> {
    let invalid = |field: &str, message: String| {
        ApiError::validation(vec![FieldError {
            field: field.to_string(),
            message,
        }])
    };
    layer.validate().map_err(|e| invalid(e.field, e.message))?;
    if let Some(apps) = &layer.required_apps {
        let catalogue = state.store.list_apps().await?;
        if let Some(unknown) = apps
            .iter()
            .find(|a| !catalogue.iter().any(|c| c.key == a.app))
        {
            return Err(invalid(
                "required_apps.app",
                format!(
                    "'{}' is not in the app catalogue; add it first",
                    unknown.app
                ),
            ));
        }
    }
    Ok(())
}

async fn set_layer(
    state: &AppState,
    caller: &Caller,
    scope: LayerScope,
    layer: Option<PolicyLayer>,
    org: Option<i64>,
) -> Result<LayerView, ApiError> {
    caller.actor.require_operator_admin()?;
    if let Some(layer) = &layer {
        checked_layer(state, layer).await?;
    }
    let (kind, id) = scope.parts();
    let action = if layer.is_some() {
        "policy.set"
    } else {
        "policy.clear"
    };
    let event = caller
        .event(action, "policy_layer", Some(format!("{kind}:{id}")))
        .in_org(org)
        .details(serde_json::to_value(&layer).unwrap_or_default());
    state
        .store
        .set_policy_layer(scope, layer.as_ref(), state.clock.now(), event)
        .await?;
    state.refresh_policy_board().await;
    crate::flows::apple_connect::policy_changed(state, scope).await?;
    Ok(layer_view(scope, layer))
}

/// The operator's standard phone: PIN, auto-lock, minimum OS versions, restrictions, apps.
#[utoipa::path(get, path = "/api/v1/policy", tag = "policies", security(("bearer" = [])),
    responses((status = 200, body = LayerView)))]
async fn get_operator_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<LayerView>, ApiError> {
    caller.actor.require_operator()?;
    stored_layer(&state, LayerScope::Operator).await
}

/// Replace the operator's standard phone (operator admin). Settings left out keep the built-in
/// value (a PIN of four digits, ten attempts, auto-lock after five minutes).
#[utoipa::path(put, path = "/api/v1/policy", tag = "policies", security(("bearer" = [])),
    request_body(content = Object),
    responses((status = 200, body = LayerView), (status = 422, body = super::problem::Problem)))]
async fn set_operator_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(layer): ApiJson<PolicyLayer>,
) -> Result<Json<LayerView>, ApiError> {
    let view = set_layer(&state, &caller, LayerScope::Operator, Some(layer), None).await?;
    Ok(Json(view))
}

/// A provider that the caller may see, or 404.
async fn visible_provider(state: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    if !caller.actor.scope().allows(Some(id)) {
        return Err(ApiError::not_found());
    }
    match state.store.organisation(id).await?.kind {
        OrgKind::Provider => Ok(()),
        OrgKind::Operator => Err(ApiError::not_found()),
    }
}

/// A provider's override of the standard phone.
#[utoipa::path(get, path = "/api/v1/providers/{id}/policy", tag = "policies", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = LayerView), (status = 404, body = super::problem::Problem)))]
async fn get_provider_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LayerView>, ApiError> {
    visible_provider(&state, &caller, id).await?;
    stored_layer(&state, LayerScope::Provider(id)).await
}

/// Set a provider's override (operator admin): what it sets wins over the standard phone for
/// that provider's phones.
#[utoipa::path(put, path = "/api/v1/providers/{id}/policy", tag = "policies", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body(content = Object),
    responses((status = 200, body = LayerView), (status = 404, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
async fn set_provider_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(layer): ApiJson<PolicyLayer>,
) -> Result<Json<LayerView>, ApiError> {
    visible_provider(&state, &caller, id).await?;
    let scope = LayerScope::Provider(id);
    Ok(Json(
        set_layer(&state, &caller, scope, Some(layer), Some(id)).await?,
    ))
}

/// Remove a provider's override (operator admin).
#[utoipa::path(delete, path = "/api/v1/providers/{id}/policy", tag = "policies", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = LayerView), (status = 404, body = super::problem::Problem)))]
async fn clear_provider_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LayerView>, ApiError> {
    visible_provider(&state, &caller, id).await?;
    let scope = LayerScope::Provider(id);
    Ok(Json(
        set_layer(&state, &caller, scope, None, Some(id)).await?,
    ))
}

/// A phone's own override.
#[utoipa::path(get, path = "/api/v1/devices/{id}/policy", tag = "policies", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = LayerView), (status = 404, body = super::problem::Problem)))]
async fn get_device_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LayerView>, ApiError> {
    state.store.device(caller.actor.scope(), id).await?;
    stored_layer(&state, LayerScope::Device(id)).await
}

/// Set a phone's own override (operator admin): it wins over the provider's and the operator's.
#[utoipa::path(put, path = "/api/v1/devices/{id}/policy", tag = "policies", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body(content = Object),
    responses((status = 200, body = LayerView), (status = 404, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
async fn set_device_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(layer): ApiJson<PolicyLayer>,
) -> Result<Json<LayerView>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    let scope = LayerScope::Device(id);
    Ok(Json(
        set_layer(&state, &caller, scope, Some(layer), device.provider_id).await?,
    ))
}

/// Remove a phone's own override (operator admin).
#[utoipa::path(delete, path = "/api/v1/devices/{id}/policy", tag = "policies", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = LayerView), (status = 404, body = super::problem::Problem)))]
async fn clear_device_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<LayerView>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    let scope = LayerScope::Device(id);
    Ok(Json(
        set_layer(&state, &caller, scope, None, device.provider_id).await?,
    ))
}

/// The policy a phone must follow: the operator's layer, then its provider's, then its own.
pub async fn effective_for(state: &AppState, device: &Device) -> Result<EffectivePolicy, ApiError> {
    let mut scopes = vec![LayerScope::Operator, LayerScope::Device(device.id)];
    scopes.extend(device.provider_id.map(LayerScope::Provider));
    let mut rows = Vec::with_capacity(3);
    for scope in scopes {
        if let Some(layer) = state.store.policy_layer(scope).await? {
            rows.push((scope, layer));
        }
    }
    let layers = PolicyLayers::from_rows(rows);
    Ok(effective(&layers.for_device(device.provider_id, device.id)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EffectivePolicyView {
    pub device_id: i64,
    /// Every setting with its `value` and `source` (`built_in`, `operator`, or `provider` or
    /// `device` with its id).
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
    /// The document the phone's agent receives, and its hash.
    #[schema(value_type = Option<Object>)]
    pub agent_document: Option<serde_json::Value>,
    pub agent_document_hash: Option<String>,
    /// Why the document cannot be made for this phone (an app missing on its platform).
    pub problem: Option<String>,
}

/// A phone's effective policy with the source of every setting.
#[utoipa::path(get, path = "/api/v1/devices/{id}/effective-policy", tag = "policies", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = EffectivePolicyView), (status = 404, body = super::problem::Problem)))]
async fn effective_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<EffectivePolicyView>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    let policy = effective_for(&state, &device).await?;
    let catalogue = state.store.list_apps().await?;
    let platform: ProfilePlatform = device.platform.into();
    let (document, hash, problem) = match profiles::agent::render(&policy, &catalogue, platform) {
        Ok(doc) => {
            let (json, hash) = doc.to_json_and_hash();
            (Some(json), Some(hash), None)
        }
        Err(e) => (None, None, Some(e.to_string())),
    };
    Ok(Json(EffectivePolicyView {
        device_id: device.id,
        policy: serde_json::to_value(&policy).unwrap_or_default(),
        agent_document: document,
        agent_document_hash: hash,
        problem,
    }))
}

/// A phone's effective policy as a signed Apple configuration profile (`.mobileconfig`): the
/// passcode and restrictions payloads, signed as CMS SignedData by a profile-signing
/// certificate of the device CA.
#[utoipa::path(get, path = "/api/v1/devices/{id}/profile.mobileconfig", tag = "policies", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, content_type = "application/x-apple-aspen-config", body = Vec<u8>),
              (status = 404, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem, description = "the phone is not an iPhone (`wrong-platform`)")))]
async fn device_profile(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::response::Response, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    device
        .platform
        .takes_apple_profiles()
        .map_err(crate::store::StoreError::Refused)?;
    let policy = effective_for(&state, &device).await?;
    let profile = profiles::apple::standard_profile(&policy, &state.config.operator_name);
    signed_profile(
        &state,
        &profile,
        &format!("device-{}.mobileconfig", device.id),
    )
}

/// What a phone last reported, if anything.
/// Calls `each` with the provider and the record of every phone in service placed with a
/// provider (only `own`'s when given), reading the inventory a page at a time.
async fn placed_phones(
    state: &AppState,
    own: Option<i64>,
    mut each: impl FnMut(i64, &Device),
) -> Result<(), ApiError> {
    let mut after_id = None;
    loop {
        let page = state
            .store
            .list_devices(&crate::store::DeviceFilter {
                scope: own,
                provider_id: own,
                after_id,
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after_id = Some(last.id);
        for device in page.iter().filter(|d| d.status.in_service()) {
            if let Some(provider) = device.provider_id {
                each(provider, device);
            }
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderCompliance {
    pub provider_id: i64,
    pub devices: u64,
    pub compliant: u64,
    pub non_compliant: u64,
    /// Phones that have not reported yet.
    pub unknown: u64,
    /// How many phones break the policy for each reason `code`.
    pub reasons: std::collections::BTreeMap<String, u64>,
}

/// Compliance per provider for dashboards: the operator sees every provider, a provider's
/// people their own. Worked out from each phone's last report and current policy.
#[utoipa::path(get, path = "/api/v1/compliance/summary", tag = "policies", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProviderCompliance>)))]
async fn compliance_summary(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ProviderCompliance>>, ApiError> {
    use std::collections::BTreeMap;
    let own = caller.actor.scope().org();
    let judge = state.judge();
    let certified: std::collections::HashSet<i64> = state
        .store
        .live_identity_devices(state.clock.now())
        .await?
        .into_iter()
        .collect();
    let mut summary: BTreeMap<i64, ProviderCompliance> = BTreeMap::new();
    placed_phones(&state, own, |provider_id, device| {
        let entry = summary
            .entry(provider_id)
            .or_insert_with(|| ProviderCompliance {
                provider_id,
                devices: 0,
                compliant: 0,
                non_compliant: 0,
                unknown: 0,
                reasons: BTreeMap::new(),
            });
        entry.devices += 1;
        let Some(facts) = device.reported_facts() else {
            entry.unknown += 1;
            return;
        };
        let reasons = judge.reasons(phone_of(device, certified.contains(&device.id)), &facts);
        if reasons.is_empty() {
            entry.compliant += 1;
        } else {
            entry.non_compliant += 1;
            for r in reasons {
                *entry.reasons.entry(r.code.to_string()).or_default() += 1;
            }
        }
    })
    .await?;
    Ok(Json(summary.into_values().collect()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReasonView {
    /// Stable: `pin_missing`, `pin_too_short`, `pin_length_unknown`, `pin_numeric`,
    /// `os_too_old`, `os_unknown`, `app_unavailable`, `app_missing`, `app_outdated`,
    /// `app_version_unknown`, `model_unsupported`, `certificate_invalid`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComplianceView {
    pub device_id: i64,
    /// `compliant`, `non_compliant`, or `unknown` before the phone has reported.
    pub status: String,
    pub reasons: Vec<ReasonView>,
    /// When the phone last checked in.
    pub last_checkin_at: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Since when the phone has had this status, as recorded at its check-ins.
    pub since: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// When its provider was told it had been non-compliant past the grace period.
    pub provider_alerted_at: Option<chrono::DateTime<chrono::FixedOffset>>,
}

/// Every reason the phone breaks its effective policy, from what it last reported; `None`
/// before it has reported.
pub async fn assess(
    state: &AppState,
    device: &Device,
) -> Result<Option<Vec<crate::domain::compliance::Reason>>, ApiError> {
    let Some(facts) = device.reported_facts() else {
        return Ok(None);
    };
    let now = state.clock.now();
    let certificate_valid = state
        .store
        .device_identities(device.id)
        .await?
        .iter()
        .any(|i| i.is_live(now));
    Ok(Some(
        state
            .judge()
            .reasons(phone_of(device, certificate_valid), &facts),
    ))
}

fn phone_of(device: &Device, certificate_valid: bool) -> crate::state::policy_board::Phone {
    crate::state::policy_board::Phone {
        device_id: device.id,
        platform: device.platform,
        provider_id: device.provider_id,
        model_id: device.model_id,
        certificate_valid,
    }
}

/// Whether a phone follows its effective policy, from what it last reported, with every
/// reason it does not.
#[utoipa::path(get, path = "/api/v1/devices/{id}/compliance", tag = "policies", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = ComplianceView), (status = 404, body = super::problem::Problem)))]
async fn device_compliance(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ComplianceView>, ApiError> {
    use crate::domain::compliance::status_of;
    let device = state.store.device(caller.actor.scope(), id).await?;
    let record = state.store.compliance_record(device.id).await?;
    let reasons = assess(&state, &device).await?;
    // The recorded "since" belongs to the status as recorded; a policy changed since the last
    // check-in may already give another.
    let recorded = record.filter(|r| reasons.as_deref().map(status_of) == Some(r.status.as_str()));
    Ok(Json(ComplianceView {
        device_id: device.id,
        status: reasons.as_deref().map_or("unknown", status_of).to_string(),
        reasons: reasons
            .unwrap_or_default()
            .into_iter()
            .map(|r| ReasonView {
                code: r.code.to_string(),
                message: r.message,
            })
            .collect(),
        last_checkin_at: device.last_checkin_at.map(|t| state.local(t)),
        since: recorded.as_ref().map(|r| state.local(r.since)),
        provider_alerted_at: recorded.and_then(|r| r.alerted_at).map(|t| state.local(t)),
    }))
}

/// One change of a phone's compliance.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplianceChangeView {
    pub at: chrono::DateTime<chrono::FixedOffset>,
    pub status: String,
    #[schema(value_type = Vec<Object>)]
    pub reasons: serde_json::Value,
}

/// How a phone's compliance changed over time, newest first, as recorded at its check-ins.
#[utoipa::path(get, path = "/api/v1/devices/{id}/compliance/history", tag = "policies", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Vec<ComplianceChangeView>), (status = 404, body = super::problem::Problem)))]
async fn compliance_history(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<ComplianceChangeView>>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    let history = state.store.compliance_history(device.id, 500).await?;
    Ok(Json(
        history
            .into_iter()
            .map(|c| ComplianceChangeView {
                at: state.local(c.at),
                status: c.status,
                reasons: serde_json::from_str(&c.reasons).unwrap_or_default(),
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppBody {
    pub name: String,
    /// Android package name, such as `se.phoniro.app`.
    pub android_package: Option<String>,
    /// iOS bundle id.
    pub ios_bundle_id: Option<String>,
    /// App Store id, for installing on iPhones through Apple's MDM.
    pub app_store_id: Option<u64>,
    /// For an app licensed per provider (the documentation app): licences included for each
    /// provider; phones beyond that are billed. Leave out for apps without licences.
    #[serde(default)]
    pub included_licences: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    pub key: String,
    #[serde(flatten)]
    pub app: AppBody,
}

fn app_view(app: CatalogueApp) -> AppView {
    AppView {
        key: app.key,
        app: AppBody {
            name: app.name,
            android_package: app.android_package,
            ios_bundle_id: app.ios_bundle_id,
            app_store_id: app.app_store_id,
            included_licences: app.included_licences,
        },
    }
}

/// The app catalogue.
#[utoipa::path(get, path = "/api/v1/apps", tag = "policies", security(("bearer" = [])),
    responses((status = 200, body = Vec<AppView>)))]
async fn list_apps(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<AppView>>, ApiError> {
    let apps = state.store.list_apps().await?;
    Ok(Json(apps.into_iter().map(app_view).collect()))
}

/// An identifier of an app: lower-case letters, digits, dots, hyphens and underscores.
fn check_id(field: &str, value: &str, fields: &mut Vec<FieldError>) {
    let ok = !value.is_empty()
        && value.len() <= 200
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !ok {
        fields.push(FieldError {
            field: field.to_string(),
            message: format!("'{value}' is not an identifier (letters, digits, '.', '-', '_')"),
        });
    }
}

/// Add an app to the catalogue or change it (operator admin). The key is what policies name.
#[utoipa::path(put, path = "/api/v1/apps/{key}", tag = "policies", security(("bearer" = [])),
    params(("key" = String, Path)), request_body = AppBody,
    responses((status = 200, body = AppView), (status = 422, body = super::problem::Problem)))]
async fn put_app(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(key): ApiPath<String>,
    ApiJson(body): ApiJson<AppBody>,
) -> Result<(StatusCode, Json<AppView>), ApiError> {
    caller.actor.require_operator_admin()?;
    let mut errors = Vec::new();
    check_id("key", &key, &mut errors);
    if body.name.trim().is_empty() || body.name.chars().count() > 200 {
        errors.push(FieldError {
            field: "name".into(),
            message: "must be 1 to 200 characters".into(),
        });
    }
    for (field, value) in [
        ("android_package", &body.android_package),
        ("ios_bundle_id", &body.ios_bundle_id),
    ] {
        if let Some(v) = value {
            check_id(field, v, &mut errors);
        }
    }
    if body.android_package.is_none() && body.ios_bundle_id.is_none() {
        errors.push(FieldError {
            field: "android_package".into(),
            message: "give the Android package name, the iOS bundle id or both".into(),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let app = CatalogueApp {
        key: key.clone(),
        name: body.name.trim().to_string(),
        android_package: body.android_package,
        ios_bundle_id: body.ios_bundle_id,
        app_store_id: body.app_store_id,
        included_licences: body.included_licences,
    };
    let event = caller
        .event("app.put", "app", Some(key))
        .details(serde_json::to_value(&app).unwrap_or_default());
    let stored = state.store.put_app(&app, state.clock.now(), event).await?;
    state.refresh_policy_board().await;
    Ok((StatusCode::OK, Json(app_view(stored))))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LicenceUse {
    pub provider_id: i64,
    /// The provider's phones that report the app installed.
    pub in_use: u64,
    pub included: u64,
    /// Phones beyond the included licences.
    pub billable: u64,
}

/// Licence accounting of an app licensed per provider (operator): per provider, the phones
/// using it, the licences included and how many are billable.
#[utoipa::path(get, path = "/api/v1/apps/{key}/licences", tag = "policies", security(("bearer" = [])),
    params(("key" = String, Path)),
    responses((status = 200, body = Vec<LicenceUse>), (status = 404, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem)))]
async fn app_licences(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Vec<LicenceUse>>, ApiError> {
    use std::collections::BTreeMap;
    caller.actor.require_operator()?;
    let app = state
        .store
        .list_apps()
        .await?
        .into_iter()
        .find(|a| a.key == key)
        .ok_or_else(ApiError::not_found)?;
    let Some(included) = app.included_licences else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not-licensed",
            "Not licensed per provider",
            format!(
                "{} has no licences per provider; set included_licences first",
                app.name
            ),
        ));
    };
    let mut in_use: BTreeMap<i64, u64> = BTreeMap::new();
    for provider in state.store.list_providers().await? {
        in_use.insert(provider.id, 0);
    }
    placed_phones(&state, None, |provider, device| {
        let using = app.id_on(device.platform.into()).is_some_and(|id| {
            device
                .reported_facts()
                .is_some_and(|f| f.installed_apps.iter().any(|i| i.id == id))
        });
        if using {
            *in_use.entry(provider).or_default() += 1;
        }
    })
    .await?;
    let included = u64::from(included);
    Ok(Json(
        in_use
            .into_iter()
            .map(|(provider_id, used)| LicenceUse {
                provider_id,
                in_use: used,
                included,
                billable: used.saturating_sub(included),
            })
            .collect(),
    ))
}
