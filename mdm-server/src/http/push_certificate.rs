//! The operator's MDM push certificate from Apple: without it no iPhone enrolls, and when it
//! lapses every enrolled iPhone is orphaned. Operator admins upload it and everyone on the
//! operator's side sees its topic and when it runs out.

use axum::extract::State;
use axum::Json;
use base64::Engine;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{invalid, ApiError, ApiJson};
use super::AppState;
use crate::domain::role::Role;
use crate::flows::apple::{upload_push_certificate, PushUpload};
use enrollment::push_certificate::PushCertificate;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_push_certificate, put_push_certificate))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushCertificateView {
    /// The push topic iPhones are enrolled under (the certificate's UID).
    pub topic: String,
    pub subject: String,
    pub not_after: DateTime<FixedOffset>,
    /// Whole days until it runs out; negative once it has.
    pub days_left: i64,
    /// iPhones enrolled under this topic, orphaned if it lapses.
    pub enrolled_iphones: u64,
}

/// The push certificate as Apple's push certificates portal gives it: either the PEM
/// certificate and its PEM key, or a `.p12` (base64) with its password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushCertificateUpload {
    pub certificate_pem: Option<String>,
    pub key_pem: Option<String>,
    pub pkcs12_base64: Option<String>,
    pub password: Option<String>,
}

impl PushCertificateUpload {
    fn upload(self) -> Result<PushUpload, ApiError> {
        match self {
            PushCertificateUpload {
                certificate_pem: Some(certificate),
                key_pem: Some(key),
                pkcs12_base64: None,
                password: None,
            } => Ok(PushUpload::Pem { certificate, key }),
            PushCertificateUpload {
                certificate_pem: None,
                key_pem: None,
                pkcs12_base64: Some(p12),
                password,
            } => {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(p12.trim())
                    .map_err(|_| invalid("pkcs12_base64", "is not base64"))?;
                Ok(PushUpload::Pkcs12 {
                    der,
                    password: password.unwrap_or_default(),
                })
            }
            _ => Err(invalid(
                "certificate_pem",
                "send either certificate_pem with key_pem, or pkcs12_base64 with its password",
            )),
        }
    }
}

async fn view(state: &AppState, p: PushCertificate) -> Result<PushCertificateView, ApiError> {
    let not_after = DateTime::from_timestamp(p.not_after.unix_timestamp(), 0).unwrap_or_default();
    Ok(PushCertificateView {
        topic: p.topic,
        subject: p.subject,
        not_after: state.local(not_after),
        days_left: (not_after - state.clock.now()).num_days(),
        enrolled_iphones: state.store.enrolled_apple_devices().await?,
    })
}

/// The MDM push certificate in use: topic, subject and when it runs out (operator roles).
#[utoipa::path(get, path = "/api/v1/push-certificate", tag = "enrollment", security(("bearer" = [])),
    responses((status = 200, body = PushCertificateView), (status = 403, body = super::problem::Problem),
        (status = 404, body = super::problem::Problem)))]
async fn get_push_certificate(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PushCertificateView>, ApiError> {
    caller.actor.require_operator()?;
    let kept = state.ca.push_certificate().map_err(|e| {
        ApiError::from(crate::store::StoreError::Unsupported(format!(
            "the push certificate cannot be read: {e}"
        )))
    })?;
    match kept {
        Some(p) => Ok(Json(view(&state, p).await?)),
        None => Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "push-certificate-missing",
            "No MDM push certificate",
            "no MDM push certificate has been uploaded; an operator admin uploads it with PUT /api/v1/push-certificate",
        )),
    }
}

/// Upload the MDM push certificate (operator admin): its key must belong to it, it must carry
/// an MDM topic and not have run out; while iPhones are enrolled its topic must stay the same.
#[utoipa::path(put, path = "/api/v1/push-certificate", tag = "enrollment", security(("bearer" = [])),
    request_body = PushCertificateUpload,
    responses((status = 200, body = PushCertificateView), (status = 403, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
async fn put_push_certificate(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PushCertificateUpload>,
) -> Result<Json<PushCertificateView>, ApiError> {
    if caller.actor.role != Role::OperatorAdmin {
        return Err(ApiError::forbidden(
            "only an operator admin uploads the push certificate",
        ));
    }
    let upload = body.upload()?;
    let event = caller.event("push_certificate.upload", "push_certificate", None);
    let kept = upload_push_certificate(
        &state.ca,
        state.store.as_ref(),
        &upload,
        state.clock.now(),
        event,
    )
    .await?;
    Ok(Json(view(&state, kept).await?))
}
