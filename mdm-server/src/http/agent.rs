//! The device listener's routes: `/agent/v1/*` over TLS. Enrollment needs only a token; every
//! other route needs a client certificate from the device CA that the database still counts
//! as live, checked on every request so that a revocation works at once.

use agent_protocol::{
    CheckinRequest, CheckinResponse, CommandResult, EnrollRequest, EnrollResponse, RenewRequest,
    RenewResponse,
};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::problem::{ApiError, ApiJson, ApiPath};
use super::AppState;
use super::Peer;
use crate::flows;
use crate::flows::enrollment::to_offset;
use crate::store::{DeviceSession, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agent/v1/ca", get(ca_chain))
        .route("/agent/v1/crl", get(revocation_list))
        .route("/agent/v1/enroll", post(enroll))
        .route("/agent/v1/checkin", post(checkin))
        .route("/agent/v1/renew", post(renew))
        .route("/agent/v1/commands/{id}/result", post(command_result))
        .route("/agent/v1/ping", post(ping))
}

/// A device with a live certificate.
#[derive(Debug, Clone)]
pub struct DeviceCaller {
    pub session: DeviceSession,
    pub peer: Peer,
}

fn identity_refused(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "device-identity-refused",
        "Device identity refused",
        detail,
    )
}

impl FromRequestParts<AppState> for DeviceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = Peer::from_request_parts(parts, state).await?;
        let Some(print) = peer.fingerprint.clone() else {
            return Err(identity_refused(
                "present the device certificate issued at enrollment",
            ));
        };
        let session = flows::enrollment::identify(state, peer.addr.ip(), &print).await?;
        Ok(DeviceCaller { session, peer })
    }
}

/// Answers a device whose certificate passed the TLS handshake, without asking the database:
/// a cheap reachability check for agents, and the ceiling the check-in benchmark compares with.
async fn ping(peer: Peer) -> Result<StatusCode, ApiError> {
    match peer.fingerprint {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(identity_refused(
            "present the device certificate issued at enrollment",
        )),
    }
}

async fn ca_chain(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.ca.chain_pem(),
    )
}

async fn revocation_list(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let now = state.clock.now();
    let revoked = state.store.revoked_identities(now).await?;
    let entries: Vec<(String, time::OffsetDateTime)> = revoked
        .into_iter()
        .map(|(serial, at)| (serial, to_offset(at)))
        .collect();
    // The CRL number only has to grow: the time in seconds does.
    let number = u64::try_from(now.timestamp()).unwrap_or(0);
    let der = state
        .ca
        .revocation_list(&entries, number, to_offset(now))
        .map_err(|e| ApiError::from(StoreError::Unsupported(e.to_string())))?;
    Ok(([(header::CONTENT_TYPE, "application/pkix-crl")], der))
}

async fn enroll(
    State(state): State<AppState>,
    peer: Peer,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<(StatusCode, Json<EnrollResponse>), ApiError> {
    let enrolled =
        flows::enrollment::enroll(&state, peer.addr.ip(), &req.token, &req.csr, &req.facts).await?;
    Ok((
        StatusCode::CREATED,
        Json(EnrollResponse {
            device_id: enrolled.device_id,
            certificate_pem: enrolled.certificate_pem,
            ca_chain_pem: state.ca.chain_pem(),
            checkin_interval_seconds: state.config.checkin_interval_seconds,
        }),
    ))
}

async fn checkin(
    State(state): State<AppState>,
    caller: DeviceCaller,
    ApiJson(req): ApiJson<CheckinRequest>,
) -> Result<Json<CheckinResponse>, ApiError> {
    Ok(Json(
        flows::checkin::check_in(&state, &caller.session, caller.peer.addr, req).await?,
    ))
}

/// Answer of the result route.
#[derive(Debug, serde::Serialize)]
struct ResultStored {
    command_id: i64,
    state: &'static str,
}

/// A phone's answer to a command it was sent. Answers are idempotent by command id: the same
/// answer again is accepted and changes nothing.
async fn command_result(
    State(state): State<AppState>,
    caller: DeviceCaller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<CommandResult>,
) -> Result<Json<ResultStored>, ApiError> {
    let command =
        flows::command_result::record(&state, &caller.session, caller.peer.addr.ip(), id, &req)
            .await?;
    Ok(Json(ResultStored {
        command_id: command.id,
        state: command.state.as_str(),
    }))
}

async fn renew(
    State(state): State<AppState>,
    caller: DeviceCaller,
    ApiJson(req): ApiJson<RenewRequest>,
) -> Result<Json<RenewResponse>, ApiError> {
    let renewed =
        flows::enrollment::renew(&state, &caller.session, caller.peer.addr.ip(), &req.csr).await?;
    Ok(Json(RenewResponse {
        certificate_pem: renewed.certificate_pem,
        ca_chain_pem: state.ca.chain_pem(),
    }))
}
