//! The device listener's routes: `/agent/v1/*` over TLS. Enrollment needs only a token; every
//! other route needs a client certificate from the device CA that the database still counts
//! as live, checked on every request so that a revocation works at once.

use agent::protocol::{
    CheckinRequest, CheckinResponse, CommandAction, CommandResult, DeviceCommand, EnrollRequest,
    EnrollResponse, RenewRequest, RenewResponse,
};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use enrollment::{check_csr, CsrError};
use std::net::SocketAddr;

use super::problem::{ApiError, ApiJson, ApiPath, FieldError};
use super::AppState;
use crate::auth::hash_token;
use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::device::{DeviceStatus, Serial};
use crate::domain::facts::{canonical, canonical_hash, check_facts, contradiction};
use crate::store::{
    Device, DeviceIdentity, DeviceSession, EnrollmentToken, ReportedFacts, StoreError,
};

/// What the TLS handshake established about the peer, put on every request of the connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The SHA-256 fingerprint of the client certificate, if the device presented one:
    /// worked out once per connection, not per request.
    pub fingerprint: Option<std::sync::Arc<str>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/agent/v1/ca", get(ca_chain))
        .route("/agent/v1/crl", get(revocation_list))
        .route("/agent/v1/enroll", post(enroll))
        .route("/agent/v1/checkin", post(checkin))
        .route("/agent/v1/renew", post(renew))
        .route("/agent/v1/commands/{id}/result", post(command_result))
        .route("/agent/v1/ping", post(ping))
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.max_body_bytes,
        ))
        .with_state(state)
}

fn device_event(
    device_id: Option<i64>,
    org_id: Option<i64>,
    peer: &Peer,
    action: &str,
    outcome: Outcome,
    details: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        actor_id: None,
        actor_label: device_id.map_or_else(|| "device".to_string(), |id| format!("device:{id}")),
        org_id,
        source: Some(peer.addr.ip().to_string()),
        action: action.to_string(),
        target_kind: Some("device".to_string()),
        target_id: device_id.map(|id| id.to_string()),
        outcome,
        details: details.to_string(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Peer>().cloned().ok_or_else(|| {
            ApiError::unauthenticated("device routes are served on the device listener only")
        })
    }
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
        let now = state.clock.now();
        match state.device_lookups.session(&print, now).await? {
            Some(session) => Ok(DeviceCaller { session, peer }),
            None => {
                let event = device_event(
                    None,
                    None,
                    &peer,
                    "device.refused",
                    Outcome::Denied,
                    serde_json::json!({
                        "fingerprint": &*print,
                        "reason": "revoked, expired or unknown certificate",
                    }),
                );
                state.store.append_audit(event, now).await?;
                Err(identity_refused(
                    "this certificate is revoked, expired or unknown; the device must enroll again",
                ))
            }
        }
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

pub fn to_offset(t: chrono::DateTime<chrono::Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.timestamp_micros()) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn from_offset(t: time::OffsetDateTime) -> chrono::DateTime<chrono::Utc> {
    crate::clock::truncate(
        chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default(),
    )
}

/// Signs the device's certificate and describes the identity the store keeps.
fn issue(
    state: &AppState,
    csr: &enrollment::CheckedCsr,
    (device_id, serial): (i64, &str),
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(enrollment::IssuedCertificate, DeviceIdentity), ApiError> {
    let issued = state
        .ca
        .issue_device_certificate(csr, &format!("device:{device_id} {serial}"), to_offset(now))
        .map_err(|e| csr_problem(CsrError::Malformed(e.to_string())))?;
    let identity = DeviceIdentity {
        serial: issued.serial.clone(),
        device_id,
        fingerprint: issued.fingerprint.clone(),
        key_kind: csr.key_kind.clone(),
        not_before: from_offset(issued.not_before),
        not_after: from_offset(issued.not_after),
        created_at: now,
        revoked_at: None,
        revoke_reason: None,
    };
    Ok((issued, identity))
}

fn csr_problem(e: CsrError) -> ApiError {
    let slug = match e {
        CsrError::WeakKey(_) => "weak-key",
        _ => "invalid-csr",
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        slug,
        "Certificate request refused",
        e.to_string(),
    )
}

fn decode_csr(text: &str) -> Result<enrollment::CheckedCsr, ApiError> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| csr_problem(CsrError::Malformed("the CSR is not base64".into())))?;
    check_csr(&der).map_err(csr_problem)
}

fn facts_problem(errors: Vec<crate::domain::DomainError>) -> ApiError {
    ApiError::validation(
        errors
            .into_iter()
            .map(|e| FieldError {
                field: format!("facts.{}", e.field()),
                message: e.message().to_string(),
            })
            .collect(),
    )
}

fn contradicts(detail: String) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "facts-contradict-record",
        "Facts contradict the record",
        detail,
    )
}

/// The device a token enrolls: the one it names, or for a provider's pool, the registered
/// phone with the reported serial that is placed with that provider.
async fn device_for_token(
    state: &AppState,
    token: &EnrollmentToken,
    serial: &str,
) -> Result<Device, ApiError> {
    if let Some(id) = token.device_id {
        return Ok(state
            .store
            .device(crate::domain::role::Scope::Everything, id)
            .await?);
    }
    let found = match Serial::parse(serial) {
        Ok(serial) => match state.store.device_by_serial(serial.as_str()).await {
            Ok(d) => Some(d),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) => None,
    };
    match found {
        Some(d) if d.provider_id.is_some() && d.provider_id == token.provider_id => {
            // A pool token enrolls a phone that has no identity yet; re-enrolling an enrolled
            // phone (which cuts off its current certificate) takes a token made for that phone.
            let now = state.clock.now();
            let identities = state.store.device_identities(d.id).await?;
            if identities.iter().any(|i| i.revoked_at.is_none() && i.not_after > now) {
                return Err(contradicts(format!(
                    "the phone with serial {serial} is already enrolled; re-enrolling it needs a token made for that phone"
                )));
            }
            if !matches!(d.status, DeviceStatus::InStock | DeviceStatus::Leased) {
                return Err(contradicts(format!(
                    "the phone with serial {serial} is {}; a pool token enrolls only phones in stock or leased",
                    d.status.as_str()
                )));
            }
            Ok(d)
        }
        _ => Err(contradicts(format!(
            "no phone with serial {serial} is registered and placed with the provider this token is for"
        ))),
    }
}

async fn enroll(
    State(state): State<AppState>,
    peer: Peer,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<(StatusCode, Json<EnrollResponse>), ApiError> {
    let now = state.clock.now();
    let refuse = |reason: &str, device_id: Option<i64>, org_id: Option<i64>| {
        device_event(
            device_id,
            org_id,
            &peer,
            "device.enroll",
            Outcome::Denied,
            serde_json::json!({ "reason": reason }),
        )
    };
    let token = match state
        .store
        .enrollment_token(&hash_token(req.token.trim()))
        .await
    {
        Ok(t) => t,
        Err(StoreError::NotFound) => {
            state
                .store
                .append_audit(refuse("unknown token", None, None), now)
                .await?;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "enrollment-token-unknown",
                "Unknown enrollment token",
                "this enrollment token does not exist; ask municipal IT for a new one",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if token.used_at.is_some() {
        state
            .store
            .append_audit(
                refuse("token already used", token.used_by, token.provider_id),
                now,
            )
            .await?;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "enrollment-token-used",
            "Enrollment token already used",
            "this enrollment token has been used; every token enrolls one phone once",
        ));
    }
    if token.expires_at <= now {
        state
            .store
            .append_audit(
                refuse("token expired", token.device_id, token.provider_id),
                now,
            )
            .await?;
        return Err(ApiError::new(
            StatusCode::GONE,
            "enrollment-token-expired",
            "Enrollment token expired",
            format!(
                "this enrollment token expired {}; ask for a new one",
                state.local(token.expires_at).format("%Y-%m-%d %H:%M")
            ),
        ));
    }
    let errors = check_facts(&req.facts);
    if !errors.is_empty() {
        return Err(facts_problem(errors));
    }
    let device = device_for_token(&state, &token, &req.facts.serial).await?;
    if let Some(reason) = contradiction(&device.serial, &device.imei, device.platform, &req.facts) {
        state
            .store
            .append_audit(refuse(&reason, Some(device.id), device.provider_id), now)
            .await?;
        return Err(contradicts(reason));
    }
    let csr = decode_csr(&req.csr)?;
    let (issued, identity) = issue(&state, &csr, (device.id, &device.serial), now)?;
    let (json, hash) = canonical(&req.facts);
    let event = device_event(
        Some(device.id),
        device.provider_id,
        &peer,
        "device.enroll",
        Outcome::Success,
        serde_json::json!({
            "token_id": token.id,
            "certificate_serial": issued.serial,
            "key": csr.key_kind,
        }),
    );
    match state
        .store
        .enroll_device(
            token.id,
            &identity,
            &ReportedFacts { json, hash },
            now,
            event,
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(what)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "enrollment-token-used",
                "Enrollment token already used",
                what,
            ))
        }
        Err(e) => return Err(e.into()),
    }
    Ok((
        StatusCode::CREATED,
        Json(EnrollResponse {
            device_id: device.id,
            certificate_pem: format!("{}{}", issued.pem, state.ca.issuing_pem()),
            ca_chain_pem: state.ca.chain_pem(),
            checkin_interval_seconds: state.config.checkin_interval_seconds,
        }),
    ))
}

async fn checkin(
    State(state): State<AppState>,
    caller: DeviceCaller,
    ApiJson(mut req): ApiJson<CheckinRequest>,
) -> Result<Json<CheckinResponse>, ApiError> {
    let now = state.clock.now();
    let device = &caller.session;
    let errors = check_facts(&req.facts);
    if !errors.is_empty() {
        return Err(facts_problem(errors));
    }
    if let Some(reason) = contradiction(&device.serial, &device.imei, device.platform, &req.facts) {
        let event = device_event(
            Some(device.device_id),
            device.provider_id,
            &caller.peer,
            "device.checkin",
            Outcome::Denied,
            serde_json::json!({ "reason": reason }),
        );
        state.store.append_audit(event, now).await?;
        return Err(contradicts(reason));
    }
    if req.report_id.is_empty() || req.report_id.len() > 64 {
        return Err(ApiError::validation(vec![FieldError {
            field: "report_id".into(),
            message: "must be 1 to 64 characters".into(),
        }]));
    }
    let hash = canonical_hash(&mut req.facts);
    // Changed facts are stored before the report is acknowledged; unchanged ones are not
    // written again, and the time of the check-in goes out in the next batch.
    let facts_changed = device.facts_hash.as_deref() != Some(hash.as_str());
    if !facts_changed {
        state.checkin_times.note(device.device_id, now);
    } else {
        let (json, hash) = canonical(&req.facts);
        let facts = ReportedFacts { json, hash };
        state
            .store
            .record_checkin(device.device_id, Some(&facts), now)
            .await?;
        super::sims::on_checkin(&state, device, &req.facts, now).await?;
    }
    super::lost_cases::on_checkin(&state, device, caller.peer.addr, &req.facts, now).await?;
    let policy = state
        .policy_board
        .document(device.platform, device.provider_id, device.device_id)
        .filter(|doc| req.policy_hash.as_deref() != Some(doc.hash.as_str()))
        .map(|doc| agent::protocol::PolicyUpdate {
            hash: doc.hash.clone(),
            document: doc.json.clone(),
        });
    // Compliance can only change with new facts or a new policy; most check-ins bring neither.
    if facts_changed || policy.is_some() {
        let phone = crate::jobs::policy_board::Phone {
            device_id: device.device_id,
            platform: device.platform,
            provider_id: device.provider_id,
            model_id: device.model_id,
            // It presented a live certificate, or it would not have got this far.
            certificate_valid: true,
        };
        let reasons = super::policies::judge(&state).reasons(phone, &req.facts);
        let assessment = crate::domain::compliance::Assessment::of(&reasons);
        if let Err(e) = state
            .store
            .record_compliance(device.device_id, &assessment, now)
            .await
        {
            tracing::warn!(device = device.device_id, error = %e, "compliance not recorded");
        }
    }
    let commands = next_commands(&state, device.device_id, now).await?;
    Ok(Json(CheckinResponse {
        acknowledged: req.report_id,
        next_checkin_seconds: state.config.checkin_interval_seconds,
        server_time: now,
        notices: state.notice_board.for_provider(device.provider_id, now),
        policy,
        commands,
    }))
}

/// The phone's next commands, marked sent.
async fn next_commands(
    state: &AppState,
    device_id: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<DeviceCommand>, ApiError> {
    if !state.command_board.may_have(device_id) {
        return Ok(Vec::new());
    }
    let taken = state
        .store
        .take_commands(device_id, now, crate::domain::command::PER_CHECKIN)
        .await?;
    let mut commands = Vec::with_capacity(taken.len());
    for (id, payload) in taken {
        match serde_json::from_str::<CommandAction>(&payload) {
            Ok(action) => commands.push(DeviceCommand { id, action }),
            Err(e) => tracing::error!(command = id, error = %e, "stored command is not readable"),
        }
    }
    Ok(commands)
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
    use crate::domain::command::ResultRefusal;
    use crate::store::commands::AnswerOutcome;
    let now = state.clock.now();
    let device = &caller.session;
    let event = device_event(
        Some(device.device_id),
        device.provider_id,
        &caller.peer,
        "device.command_result",
        Outcome::Success,
        serde_json::json!({
            "command_id": id,
            "status": req.status,
            "error": crate::domain::command::error_text(req.error.as_deref()),
        }),
    );
    let refused = |slug: &'static str, title: &'static str, detail: String| {
        ApiError::new(StatusCode::CONFLICT, slug, title, detail)
    };
    let outcome = match state
        .store
        .record_answer(
            device.device_id,
            id,
            req.status,
            req.error.as_deref(),
            now,
            event,
        )
        .await
    {
        Err(StoreError::NotFound) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "command-unknown",
                "No such command for this phone",
                format!("this phone was never sent command {id}"),
            ))
        }
        other => other?,
    };
    match outcome {
        AnswerOutcome::Recorded(c) | AnswerOutcome::Repeat(c) => Ok(Json(ResultStored {
            command_id: c.id,
            state: c.state.as_str(),
        })),
        AnswerOutcome::Refused(ResultRefusal::NotSent) => Err(refused(
            "command-not-sent",
            "The command was not sent to this phone",
            format!("command {id} has not been sent to this phone yet, so it cannot have a result"),
        )),
        AnswerOutcome::Refused(ResultRefusal::Conflicts(was)) => Err(refused(
            "command-result-conflict",
            "The command already has another result",
            format!(
                "command {id} is already {}; its result cannot change",
                was.as_str()
            ),
        )),
        AnswerOutcome::Refused(ResultRefusal::Cancelled) => Err(refused(
            "command-cancelled",
            "The command was cancelled",
            format!("command {id} was cancelled before this answer arrived"),
        )),
    }
}

async fn renew(
    State(state): State<AppState>,
    caller: DeviceCaller,
    ApiJson(req): ApiJson<RenewRequest>,
) -> Result<Json<RenewResponse>, ApiError> {
    let now = state.clock.now();
    let session = &caller.session;
    let csr = decode_csr(&req.csr)?;
    let (issued, identity) = issue(&state, &csr, (session.device_id, &session.serial), now)?;
    let event = device_event(
        Some(session.device_id),
        session.provider_id,
        &caller.peer,
        "device.renew",
        Outcome::Success,
        serde_json::json!({
            "old_serial": session.certificate_serial,
            "new_serial": issued.serial,
        }),
    );
    state
        .store
        .renew_identity(&session.certificate_serial, &identity, now, event)
        .await?;
    Ok(Json(RenewResponse {
        certificate_pem: format!("{}{}", issued.pem, state.ca.issuing_pem()),
        ca_chain_pem: state.ca.chain_pem(),
    }))
}
