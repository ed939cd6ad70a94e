//! Enrollment for operators: tokens (with QR codes) for a registered phone or a provider's
//! pool, a device's certificate and last check-in, and revoking a device's identity.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use chrono::{DateTime, Duration, FixedOffset};
use enrollment::EnrollmentInvite;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::{Caller, Source};
use super::problem::{ApiError, ApiJson, ApiPath, Fields};
use super::{public_base, signed_profile, AppState};
use crate::auth::hash_token;
use crate::domain::device::Channel;
use crate::domain::organisation::OrgKind;
use crate::domain::role::Scope;
use crate::store::{DeviceIdentity, EnrollmentToken, NewEnrollmentToken, StoreError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(apple_enrollment_profile))
        .routes(routes!(device_identity))
        .routes(routes!(revoke_identity))
}

pub const DEFAULT_TOKEN_DAYS: u32 = 7;
pub const MAX_TOKEN_DAYS: u32 = 30;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    /// The registered phone this token enrolls.
    pub device_id: Option<i64>,
    /// Or: any registered phone placed with this provider.
    pub provider_id: Option<i64>,
    /// 1 to 30 days (default 7).
    pub expires_in_days: Option<u32>,
    /// How the phone enrolls: `agent` (default), or `apple_mdm` for an iPhone managed through
    /// Apple's own protocol (it opens the token's address and installs the profile).
    pub channel: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: i64,
    /// What the phone is given, shown only now: for `agent` the text for
    /// `mdm-agent enroll --token ...`; for `apple_mdm` the address the iPhone opens to download
    /// its enrollment profile.
    pub token: String,
    /// `agent` or `apple_mdm`.
    pub channel: String,
    pub expires_at: DateTime<FixedOffset>,
    pub device_id: Option<i64>,
    pub provider_id: Option<i64>,
    /// The token (for `apple_mdm`, its address) as a QR code, SVG.
    pub qr_svg: String,
    /// The token as a QR code, PNG, base64.
    pub qr_png_base64: String,
}

impl std::fmt::Debug for CreatedToken {
    // The token is a secret: it stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub device_id: Option<i64>,
    pub provider_id: Option<i64>,
    /// `agent` or `apple_mdm`.
    pub channel: String,
    pub created_at: DateTime<FixedOffset>,
    pub expires_at: DateTime<FixedOffset>,
    /// `unused`, `used` or `expired`.
    pub status: String,
    pub used_at: Option<DateTime<FixedOffset>>,
    pub used_by_device: Option<i64>,
}

fn token_view(state: &AppState, t: EnrollmentToken) -> TokenView {
    let status = if t.used_at.is_some() {
        "used"
    } else if t.expires_at <= state.clock.now() {
        "expired"
    } else {
        "unused"
    };
    TokenView {
        id: t.id,
        device_id: t.device_id,
        provider_id: t.provider_id,
        channel: t.channel.as_str().to_string(),
        created_at: state.local(t.created_at),
        expires_at: state.local(t.expires_at),
        status: status.to_string(),
        used_at: t.used_at.map(|x| state.local(x)),
        used_by_device: t.used_by,
    }
}

/// Create an enrollment token for a registered phone or a provider's pool (operator).
#[utoipa::path(post, path = "/api/v1/enrollment-tokens", tag = "enrollment", security(("bearer" = [])),
    request_body = NewTokenBody,
    responses((status = 201, body = CreatedToken), (status = 403, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewTokenBody>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.actor.require_operator()?;
    let mut fields = Fields::default();
    let channel = match body.channel.as_deref() {
        None => Some(Channel::Agent),
        Some(text) => fields.check(Channel::parse(text)),
    };
    let days = body.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        fields.push(
            "expires_in_days",
            format!("must be between 1 and {MAX_TOKEN_DAYS}"),
        );
    }
    match (body.device_id, body.provider_id) {
        (Some(_), Some(_)) | (None, None) => {
            fields.push("device_id", "give either device_id or provider_id")
        }
        (Some(device), None) => match state.store.device(Scope::Everything, device).await {
            Ok(d) => {
                let wanted = channel.and_then(Channel::platform);
                if wanted.is_some_and(|p| p != d.platform) {
                    fields.push(
                        "channel",
                        format!(
                            "this phone is registered as {}; apple_mdm enrolls iPhones",
                            d.platform.as_str()
                        ),
                    );
                }
            }
            Err(StoreError::NotFound) => fields.push("device_id", "no such device"),
            Err(e) => return Err(e.into()),
        },
        (None, Some(provider)) => match state.store.organisation(provider).await {
            Ok(org) if org.kind == OrgKind::Provider => {}
            Ok(_) | Err(StoreError::NotFound) => fields.push("provider_id", "no such provider"),
            Err(e) => return Err(e.into()),
        },
    }
    fields.finish()?;
    let channel = channel.unwrap_or_default();
    let now = state.clock.now();
    let invite = EnrollmentInvite::new(&state.device_url, &state.ca.root_fingerprint());
    let expires_at = now + Duration::days(i64::from(days));
    let token = NewEnrollmentToken {
        token_hash: hash_token(&invite.secret),
        device_id: body.device_id,
        provider_id: body.provider_id,
        created_by: Some(caller.actor.account_id),
        expires_at,
        channel,
    };
    let event = caller
        .event("enrollment_token.create", "enrollment_token", None)
        .in_org(body.provider_id)
        .details(serde_json::json!({ "device_id": body.device_id, "provider_id": body.provider_id, "days": days, "channel": channel.as_str() }));
    let id = state
        .store
        .create_enrollment_token(&token, now, event)
        .await?;
    let internal =
        |e: enrollment::TokenError| ApiError::from(StoreError::Unsupported(e.to_string()));
    let given = match channel {
        Channel::Agent => invite.encode(),
        Channel::AppleMdm => format!(
            "{}{}",
            public_base(&state, &headers),
            apple_profile_path(&invite.secret)
        ),
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id,
            qr_svg: enrollment::token::qr_svg(&given).map_err(internal)?,
            qr_png_base64: base64::engine::general_purpose::STANDARD
                .encode(enrollment::token::qr_png(&given).map_err(internal)?),
            token: given,
            channel: channel.as_str().to_string(),
            expires_at: state.local(expires_at),
            device_id: body.device_id,
            provider_id: body.provider_id,
        }),
    ))
}

/// Where an iPhone downloads its enrollment profile for a token.
fn apple_profile_path(secret: &str) -> String {
    format!("/enroll/apple/{secret}")
}

/// An iPhone's enrollment profile, for the token in the address (no login: the phone opens it
/// from the QR code). Signed by the device CA; the download does not use the token up, SCEP
/// does. Refused while the operator has no MDM push certificate.
#[utoipa::path(get, path = "/enroll/apple/{secret}", tag = "enrollment",
    params(("secret" = String, Path, description = "the token's secret, from its address")),
    responses((status = 200, content_type = "application/x-apple-aspen-config", body = Vec<u8>),
              (status = 401, body = super::problem::Problem), (status = 409, body = super::problem::Problem),
              (status = 410, body = super::problem::Problem)))]
async fn apple_enrollment_profile(
    State(state): State<AppState>,
    Source(source): Source,
    ApiPath(secret): ApiPath<String>,
) -> Result<axum::response::Response, ApiError> {
    let source = source
        .and_then(|s| s.parse().ok())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let grant = crate::flows::apple::profile_grant(&state, source, &secret).await?;
    let profile = crate::flows::apple::enrollment_profile(&state, &secret, &grant);
    signed_profile(&state, &profile, "enrollment.mobileconfig")
}

/// The newest enrollment tokens and whether they were used (operator; never the secrets).
#[utoipa::path(get, path = "/api/v1/enrollment-tokens", tag = "enrollment", security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenView>), (status = 403, body = super::problem::Problem)))]
async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    caller.actor.require_operator()?;
    let tokens = state.store.list_enrollment_tokens(500).await?;
    Ok(Json(
        tokens.into_iter().map(|t| token_view(&state, t)).collect(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    /// Lower-case hex.
    pub serial: String,
    /// SHA-256 of the certificate, lower-case hex.
    pub fingerprint: String,
    /// `p256` or `rsa-<bits>`.
    pub key: String,
    pub not_before: DateTime<FixedOffset>,
    pub not_after: DateTime<FixedOffset>,
    pub revoked_at: Option<DateTime<FixedOffset>>,
    pub revoke_reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    pub device_id: i64,
    pub enrolled_at: Option<DateTime<FixedOffset>>,
    pub last_checkin_at: Option<DateTime<FixedOffset>>,
    /// The live certificate, if the device has one.
    pub certificate: Option<CertificateView>,
    /// Every certificate the device has had, newest first.
    pub history: Vec<CertificateView>,
    /// How the phone enrolled last: `agent` or `apple_mdm` (none before its first enrollment).
    pub channel: Option<String>,
    /// For an iPhone enrolled through Apple's protocol: what it told the server.
    pub apple_mdm: Option<AppleMdmView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppleMdmView {
    pub udid: String,
    /// The push topic of its last `TokenUpdate`.
    pub topic: Option<String>,
    /// Whether the server holds a push token to wake it with.
    pub push_token_present: bool,
    pub token_updated_at: Option<DateTime<FixedOffset>>,
    /// When the person removed the MDM profile, if they did.
    pub checked_out_at: Option<DateTime<FixedOffset>>,
    /// Whether it is supervised (lost mode needs it); unknown until its inventory answer.
    pub supervised: Option<bool>,
    /// Whether a push can wake it: it has a token, is not checked out, and APNs has not
    /// refused the token. When it cannot, it collects its commands only when it connects by
    /// itself.
    pub can_be_woken: bool,
    /// When APNs last took a push for it.
    pub pushed_at: Option<DateTime<FixedOffset>>,
    /// When APNs refused its push token for good, and why (`Unregistered`, `BadDeviceToken`).
    pub push_token_refused_at: Option<DateTime<FixedOffset>>,
    pub push_token_refused_reason: Option<String>,
}

fn certificate_view(state: &AppState, i: DeviceIdentity) -> CertificateView {
    CertificateView {
        serial: i.serial,
        fingerprint: i.fingerprint,
        key: i.key_kind,
        not_before: state.local(i.not_before),
        not_after: state.local(i.not_after),
        revoked_at: i.revoked_at.map(|t| state.local(t)),
        revoke_reason: i.revoke_reason,
    }
}

/// A device's certificate, its history and its last check-in.
#[utoipa::path(get, path = "/api/v1/devices/{id}/identity", tag = "enrollment", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = IdentityView), (status = 404, body = super::problem::Problem)))]
async fn device_identity(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IdentityView>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    let now = state.clock.now();
    let identities = state.store.device_identities(id).await?;
    let live = identities
        .iter()
        .find(|i| i.is_live(now))
        .cloned()
        .map(|i| certificate_view(&state, i));
    let apple = state.store.apple_device(id).await?;
    let channel = match (&apple, device.enrolled_at) {
        (Some(_), _) => Some(Channel::AppleMdm),
        (None, Some(_)) => Some(Channel::Agent),
        (None, None) => None,
    };
    Ok(Json(IdentityView {
        device_id: id,
        enrolled_at: device.enrolled_at.map(|t| state.local(t)),
        last_checkin_at: device.last_checkin_at.map(|t| state.local(t)),
        channel: channel.map(|c| c.as_str().to_string()),
        apple_mdm: apple.map(|a| AppleMdmView {
            udid: a.udid,
            topic: a.topic,
            push_token_present: a.push_token.is_some(),
            token_updated_at: a.token_updated_at.map(|t| state.local(t)),
            checked_out_at: a.checked_out_at.map(|t| state.local(t)),
            supervised: a.supervised,
            can_be_woken: a.push_token.is_some()
                && a.checked_out_at.is_none()
                && a.push_dead.is_none(),
            pushed_at: a.pushed_at.map(|t| state.local(t)),
            push_token_refused_at: a.push_dead.as_ref().map(|(t, _)| state.local(*t)),
            push_token_refused_reason: a.push_dead.map(|(_, reason)| reason),
        }),
        certificate: live,
        history: identities
            .into_iter()
            .map(|i| certificate_view(&state, i))
            .collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// Why, for the audit trail (for example "lost" or "broken").
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// How many live certificates were revoked.
    pub revoked: u64,
}

/// Revoke a device's identity (operator): its next request is refused.
#[utoipa::path(post, path = "/api/v1/devices/{id}/identity/revoke", tag = "enrollment", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = RevokeBody,
    responses((status = 200, body = Revoked), (status = 404, body = super::problem::Problem)))]
async fn revoke_identity(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RevokeBody>,
) -> Result<Json<Revoked>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    caller.actor.require_operator()?;
    let mut fields = Fields::default();
    let reason = fields.check(crate::domain::organisation::parse_name(
        "reason",
        &body.reason,
    ));
    fields.finish()?;
    let reason = super::problem::checked(reason)?;
    let event = caller
        .event("device.revoke_identity", "device", Some(id.to_string()))
        .in_org(device.provider_id)
        .details(serde_json::json!({ "reason": reason }));
    let revoked = state
        .store
        .revoke_device_identities(id, &reason, state.clock.now(), event)
        .await?;
    Ok(Json(Revoked { revoked }))
}
