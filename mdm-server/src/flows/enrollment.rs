//! A phone gets its identity: it enrolls with a single-use enrollment token and a CSR, and
//! later renews its certificate. The same steps serve every way a phone enrolls.

use base64::Engine;
use chrono::{DateTime, Utc};
use enrollment::{check_csr, CsrError};
use std::net::IpAddr;

use super::{device_event, FlowError, FlowResult, InvalidField, RejectionClass};
use crate::auth::hash_token;
use crate::domain::audit::Outcome;
use crate::domain::device::{Channel, DeviceStatus, Serial};
use crate::domain::facts::{canonical, check_facts, contradiction};
use crate::state::AppState;
use crate::store::{
    Device, DeviceIdentity, DeviceSession, EnrollmentToken, ReportedFacts, StoreError,
};
use agent_protocol::DeviceFacts;

/// An enrolled phone's new identity.
#[derive(Debug)]
pub struct Enrolled {
    pub device_id: i64,
    /// The device's certificate followed by the issuing CA.
    pub certificate_pem: String,
}

/// A renewed identity.
#[derive(Debug)]
pub struct Renewed {
    /// The device's certificate followed by the issuing CA.
    pub certificate_pem: String,
}

pub fn to_offset(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.timestamp_micros()) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn from_offset(t: time::OffsetDateTime) -> DateTime<Utc> {
    crate::clock::truncate(
        chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default(),
    )
}

fn csr_refused(e: CsrError) -> FlowError {
    let kind = match e {
        CsrError::WeakKey(_) => "weak-key",
        _ => "invalid-csr",
    };
    FlowError::rejected(
        RejectionClass::Unprocessable,
        kind,
        "Certificate request refused",
        e.to_string(),
    )
}

/// The CSR a phone sent as base64 DER, checked.
fn decode_csr(text: &str) -> FlowResult<enrollment::CheckedCsr> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| csr_refused(CsrError::Malformed("the CSR is not base64".into())))?;
    check_csr(&der).map_err(csr_refused)
}

/// Refuses facts that break a rule, naming each field under `facts.`.
pub fn check_reported_facts(facts: &DeviceFacts) -> FlowResult<()> {
    let errors = check_facts(facts);
    if errors.is_empty() {
        return Ok(());
    }
    Err(FlowError::Invalid(
        errors
            .into_iter()
            .map(|e| InvalidField {
                field: format!("facts.{}", e.field()),
                message: e.message().to_string(),
            })
            .collect(),
    ))
}

pub fn contradicts(detail: String) -> FlowError {
    FlowError::rejected(
        RejectionClass::Conflict,
        "facts-contradict-record",
        "Facts contradict the record",
        detail,
    )
}

/// The audit entry of a phone's enrollment: its token and certificate, and `more` of its
/// channel's (an object whose fields are added).
pub fn enrolled(
    device: &crate::store::Device,
    source: IpAddr,
    token_id: i64,
    identity: &DeviceIdentity,
    more: serde_json::Value,
) -> crate::domain::audit::AuditEvent {
    let mut details = serde_json::json!({
        "token_id": token_id,
        "certificate_serial": identity.serial,
        "key": identity.key_kind,
    });
    if let (Some(all), serde_json::Value::Object(extra)) = (details.as_object_mut(), more) {
        all.extend(extra);
    }
    device_event(
        Some(device.id),
        device.provider_id,
        source,
        "device.enroll",
        Outcome::Success,
        details,
    )
}

/// Signs the device's certificate and describes the identity the store keeps.
pub fn issue(
    state: &AppState,
    csr: &enrollment::CheckedCsr,
    (device_id, serial): (i64, &str),
    now: DateTime<Utc>,
) -> FlowResult<(enrollment::IssuedCertificate, DeviceIdentity)> {
    let issued = state
        .ca
        .issue_device_certificate(csr, &format!("device:{device_id} {serial}"), to_offset(now))
        .map_err(|e| csr_refused(CsrError::Malformed(e.to_string())))?;
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

/// The device a token enrolls: the one it names, or for a provider's pool, the registered
/// phone with the reported serial that is placed with that provider.
pub async fn device_for_token(
    state: &AppState,
    token: &EnrollmentToken,
    serial: &str,
) -> FlowResult<Device> {
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
            if identities.iter().any(|i| i.is_live(now)) {
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

/// Enrolls the phone an enrollment token is for: the token must exist, be unused and
/// unexpired, the facts must fit the record, and the CSR must carry an acceptable key. Every
/// refusal is audited; the token is used up and the identity stored in one transaction.
pub async fn enroll(
    state: &AppState,
    source: IpAddr,
    secret: &str,
    csr: &str,
    facts: &DeviceFacts,
) -> FlowResult<Enrolled> {
    let now = state.clock.now();
    let token = usable_token(state, source, secret, Channel::Agent).await?;
    check_reported_facts(facts)?;
    let device = device_for_token(state, &token, &facts.serial).await?;
    if let Some(reason) = contradiction(&device.serial, &device.imei, device.platform, facts) {
        state
            .store
            .append_audit(
                refused_enrollment(source, &reason, Some(device.id), device.provider_id),
                now,
            )
            .await?;
        return Err(contradicts(reason));
    }
    let csr = decode_csr(csr)?;
    let (issued, identity) = issue(state, &csr, (device.id, &device.serial), now)?;
    let (json, hash) = canonical(facts);
    let event = enrolled(
        &device,
        source,
        token.id,
        &identity,
        serde_json::json!({ "channel": Channel::Agent.as_str() }),
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
        Err(StoreError::Conflict(what)) => return Err(token_used(what)),
        Err(e) => return Err(e.into()),
    }
    Ok(Enrolled {
        device_id: device.id,
        certificate_pem: format!("{}{}", issued.pem, state.ca.issuing_pem()),
    })
}

/// The audit entry of a refused enrollment.
pub fn refused_enrollment(
    source: IpAddr,
    reason: &str,
    device_id: Option<i64>,
    org_id: Option<i64>,
) -> crate::domain::audit::AuditEvent {
    device_event(
        device_id,
        org_id,
        source,
        "device.enroll",
        Outcome::Denied,
        serde_json::json!({ "reason": reason }),
    )
}

/// The enrollment token with this secret, if it exists, is unused, unexpired and made for
/// `channel`; every refusal is audited.
pub async fn usable_token(
    state: &AppState,
    source: IpAddr,
    secret: &str,
    channel: Channel,
) -> FlowResult<EnrollmentToken> {
    let now = state.clock.now();
    let refuse = |reason: &str, device_id: Option<i64>, org_id: Option<i64>| {
        refused_enrollment(source, reason, device_id, org_id)
    };
    let token = match state
        .store
        .enrollment_token(&hash_token(secret.trim()))
        .await
    {
        Ok(t) => t,
        Err(StoreError::NotFound) => {
            state
                .store
                .append_audit(refuse("unknown token", None, None), now)
                .await?;
            return Err(FlowError::rejected(
                RejectionClass::Unauthenticated,
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
        return Err(token_used(
            "this enrollment token has been used; every token enrolls one phone once".into(),
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
        return Err(FlowError::rejected(
            RejectionClass::Gone,
            "enrollment-token-expired",
            "Enrollment token expired",
            format!(
                "this enrollment token expired {}; ask for a new one",
                state.local(token.expires_at).format("%Y-%m-%d %H:%M")
            ),
        ));
    }
    if token.channel != channel {
        state
            .store
            .append_audit(
                refuse(
                    "token for another channel",
                    token.device_id,
                    token.provider_id,
                ),
                now,
            )
            .await?;
        return Err(FlowError::rejected(
            RejectionClass::Conflict,
            "enrollment-channel-mismatch",
            "Enrollment token for another channel",
            format!(
                "this enrollment token enrolls a phone through {}, not {}",
                token.channel.as_str(),
                channel.as_str()
            ),
        ));
    }
    Ok(token)
}

pub fn token_used(detail: String) -> FlowError {
    FlowError::rejected(
        RejectionClass::Conflict,
        "enrollment-token-used",
        "Enrollment token already used",
        detail,
    )
}

/// Issues a phone with a live certificate a new one for a new key; the old one is revoked in
/// the same transaction.
pub async fn renew(
    state: &AppState,
    session: &DeviceSession,
    source: IpAddr,
    csr: &str,
) -> FlowResult<Renewed> {
    let issued = renew_checked(state, session, source, &decode_csr(csr)?).await?;
    Ok(Renewed {
        certificate_pem: format!("{}{}", issued.pem, state.ca.issuing_pem()),
    })
}

/// Renews with a CSR already checked (SCEP's renewal request carries one).
pub async fn renew_checked(
    state: &AppState,
    session: &DeviceSession,
    source: IpAddr,
    csr: &enrollment::CheckedCsr,
) -> FlowResult<enrollment::IssuedCertificate> {
    let now = state.clock.now();
    let (issued, identity) = issue(state, csr, (session.device_id, &session.serial), now)?;
    let event = device_event(
        Some(session.device_id),
        session.provider_id,
        source,
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
    Ok(issued)
}

/// The device a live certificate belongs to; an unknown, revoked or expired one is refused and
/// audited. Every device route of every channel asks this on every request.
pub async fn identify(
    state: &AppState,
    source: IpAddr,
    fingerprint: &str,
) -> FlowResult<DeviceSession> {
    let now = state.clock.now();
    if let Some(session) = state.device_lookups.session(fingerprint, now).await? {
        return Ok(session);
    }
    let event = device_event(
        None,
        None,
        source,
        "device.refused",
        Outcome::Denied,
        serde_json::json!({
            "fingerprint": fingerprint,
            "reason": "revoked, expired or unknown certificate",
        }),
    );
    state.store.append_audit(event, now).await?;
    Err(FlowError::rejected(
        RejectionClass::Unauthenticated,
        "device-identity-refused",
        "Device identity refused",
        "this certificate is revoked, expired or unknown; the device must enroll again",
    ))
}
