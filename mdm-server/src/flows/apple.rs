//! iPhones through Apple's MDM protocol: SCEP gives the phone its certificate against an
//! enrollment token, its `Authenticate` ties that certificate to the device record (the same
//! token, facts and re-enrollment rules as every phone's), `TokenUpdate` brings its push token,
//! and `CheckOut` says its MDM profile was removed.

use chrono::Duration;
use std::net::IpAddr;

use super::enrollment::{
    contradicts, device_for_token, enrolled, issue, refused_enrollment, token_used, usable_token,
};
use super::{device_event, FlowError, FlowResult, InvalidField, RejectionClass};
use crate::domain::audit::Outcome;
use crate::domain::device::{Channel, Platform};
use crate::domain::facts::{canonical, check_facts, contradiction};
use crate::state::AppState;
use crate::store::apple::{PendingEnrollment, PushDetails};
use crate::store::{DeviceIdentity, DeviceSession, ReportedFacts, StoreError};
use agent_protocol::DeviceFacts;
use profiles::apple_checkin::{Authenticate, TokenUpdate};

/// How long a certificate SCEP issued waits for the phone's `Authenticate`: the phone sends it
/// moments after SCEP, within the same profile installation.
pub const PENDING_FOR: Duration = Duration::hours(24);

fn refused(kind: &'static str, title: &'static str, detail: impl Into<String>) -> FlowError {
    FlowError::rejected(RejectionClass::Unauthenticated, kind, title, detail)
}

/// A SCEP request for a first certificate: its challenge must be an unused, unexpired
/// enrollment token made for iPhones, and its key RSA of at least 2048 bits. The certificate
/// is issued for the request's key only and waits for the phone's `Authenticate`; the token is
/// used up in the same transaction that keeps it.
pub async fn scep_enroll(
    state: &AppState,
    source: IpAddr,
    csr: &enrollment::CheckedCsr,
) -> FlowResult<enrollment::IssuedCertificate> {
    let now = state.clock.now();
    let Some(challenge) = csr.challenge.as_deref() else {
        state
            .store
            .append_audit(refused_enrollment(source, "no challenge", None, None), now)
            .await?;
        return Err(refused(
            "scep-challenge-missing",
            "No challenge",
            "the request carries no challenge password; install the enrollment profile from municipal IT",
        ));
    };
    let token = usable_token(state, source, challenge, Channel::AppleMdm).await?;
    if !csr.is_rsa() {
        return Err(FlowError::rejected(
            RejectionClass::Unprocessable,
            "weak-key",
            "Certificate request refused",
            format!(
                "an iPhone's key must be RSA of at least 2048 bits, not {}",
                csr.key_kind
            ),
        ));
    }
    let subject = match token.device_id {
        Some(id) => {
            let device = state
                .store
                .device(crate::domain::role::Scope::Everything, id)
                .await?;
            format!("device:{id} {}", device.serial)
        }
        None => format!("iphone: token {}", token.id),
    };
    let (issued, identity) = issue(state, csr, (token.device_id.unwrap_or(0), &subject), now)?;
    let pending = PendingEnrollment {
        fingerprint: identity.fingerprint,
        certificate_serial: identity.serial,
        token_id: token.id,
        key_kind: identity.key_kind,
        not_before: identity.not_before,
        not_after: identity.not_after,
        created_at: now,
    };
    let event = device_event(
        token.device_id,
        token.provider_id,
        source,
        "device.scep_issue",
        Outcome::Success,
        serde_json::json!({
            "token_id": token.id,
            "certificate_serial": pending.certificate_serial,
            "key": pending.key_kind,
        }),
    );
    match state.store.claim_token_for_scep(&pending, now, event).await {
        Ok(()) => Ok(issued),
        Err(StoreError::Conflict(what)) => Err(token_used(what)),
        Err(e) => Err(e.into()),
    }
}

/// What an `Authenticate` says about the phone, as the facts every phone reports. The IMEI is
/// compared when the phone sends it (a phone without a cellular modem does not).
fn reported_facts(a: &Authenticate, record_imei: &str) -> DeviceFacts {
    DeviceFacts {
        platform: Platform::Ios.as_str().to_string(),
        model: a
            .product_name
            .clone()
            .or_else(|| a.model.clone())
            .unwrap_or_default(),
        os_version: a.os_version.clone().unwrap_or_default(),
        serial: a.serial_number.clone().unwrap_or_default(),
        imei: a.imei.clone().unwrap_or_else(|| record_imei.to_string()),
        iccid: None,
        phone_number: None,
        battery_percent: None,
        storage_free_bytes: None,
        storage_total_bytes: None,
        installed_apps: Vec::new(),
        pin: Default::default(),
        disk_encrypted: false,
        mobile_data_bytes_this_month: None,
        agent_version: String::new(),
    }
}

/// An `Authenticate` signed with a certificate SCEP issued: the phone's serial (and IMEI) must
/// fit the record the token is for, or for a pool token a phone placed with its provider. Then
/// the certificate becomes the phone's one live identity, exactly as an agent's enrollment
/// makes it; a refusal drops the certificate and is audited. An `Authenticate` from a phone
/// already enrolled with this certificate is answered again without change.
pub async fn authenticate(
    state: &AppState,
    source: IpAddr,
    fingerprint: &str,
    message: &Authenticate,
) -> FlowResult<()> {
    let now = state.clock.now();
    let Some((pending, token)) = state.store.pending_enrollment(fingerprint).await? else {
        if let Some(session) = state.device_lookups.session(fingerprint, now).await? {
            let known = state.store.apple_device(session.device_id).await?;
            if known.is_some_and(|d| d.udid == message.udid) {
                return Ok(());
            }
        }
        return Err(refused(
            "device-identity-refused",
            "Device identity refused",
            "this certificate was not issued for an enrollment in progress; install the enrollment profile again",
        ));
    };
    let drop = |reason: String, device_id: Option<i64>, org_id: Option<i64>| {
        let event = refused_enrollment(source, &reason, device_id, org_id);
        async move {
            state
                .store
                .drop_pending_enrollment(fingerprint, now, event)
                .await
        }
    };
    if now - pending.created_at > PENDING_FOR {
        drop(
            "certificate waited too long".into(),
            token.device_id,
            token.provider_id,
        )
        .await?;
        return Err(FlowError::rejected(
            RejectionClass::Gone,
            "enrollment-stale",
            "Enrollment took too long",
            "the certificate for this enrollment waited too long for the phone; ask municipal IT for a new token",
        ));
    }
    let Some(serial) = message.serial_number.as_deref() else {
        drop(
            "no serial number".into(),
            token.device_id,
            token.provider_id,
        )
        .await?;
        return Err(FlowError::Invalid(vec![InvalidField {
            field: "SerialNumber".into(),
            message: "an iPhone reports its serial number".into(),
        }]));
    };
    let device = match device_for_token(state, &token, serial).await {
        Ok(d) => d,
        Err(e) => {
            drop(e.to_string(), token.device_id, token.provider_id).await?;
            return Err(e);
        }
    };
    let facts = reported_facts(message, &device.imei);
    let problems = check_facts(&facts);
    let refusal = match problems.first() {
        Some(p) => Some(format!("{}: {}", p.field(), p.message())),
        None => contradiction(&device.serial, &device.imei, device.platform, &facts),
    };
    if let Some(reason) = refusal {
        drop(reason.clone(), Some(device.id), device.provider_id).await?;
        return Err(contradicts(reason));
    }
    let identity = DeviceIdentity {
        serial: pending.certificate_serial.clone(),
        device_id: device.id,
        fingerprint: pending.fingerprint.clone(),
        key_kind: pending.key_kind.clone(),
        not_before: pending.not_before,
        not_after: pending.not_after,
        created_at: now,
        revoked_at: None,
        revoke_reason: None,
    };
    let (json, hash) = canonical(&facts);
    let event = enrolled(
        &device,
        source,
        token.id,
        &identity,
        serde_json::json!({ "channel": Channel::AppleMdm.as_str(), "udid": message.udid }),
    );
    match state
        .store
        .complete_apple_enrollment(
            &identity,
            &ReportedFacts { json, hash },
            &message.udid,
            now,
            event,
        )
        .await
    {
        Ok(()) => {
            // A phone enrolled again (after an erase, say) has none of the profiles it had.
            state.profile_ledger.forget(device.id);
            super::apple_connect::ask_for_inventory(state, device.id).await
        }
        Err(StoreError::Conflict(what)) => Err(contradicts(what)),
        Err(e) => Err(e.into()),
    }
}

/// Checks that a message's UDID is the enrolled phone's.
async fn same_phone(state: &AppState, session: &DeviceSession, udid: &str) -> FlowResult<()> {
    match state.store.apple_device(session.device_id).await? {
        Some(d) if d.udid == udid => Ok(()),
        _ => Err(refused(
            "device-identity-refused",
            "Device identity refused",
            "this certificate belongs to another iPhone",
        )),
    }
}

/// A `TokenUpdate`: the phone's push token, PushMagic and topic are kept for waking it.
pub async fn token_update(
    state: &AppState,
    session: &DeviceSession,
    message: &TokenUpdate,
) -> FlowResult<()> {
    same_phone(state, session, &message.udid).await?;
    let push = PushDetails {
        topic: message.topic.clone(),
        push_token: message.token.clone().into(),
        push_magic: message.push_magic.clone(),
    };
    state
        .store
        .update_apple_push(session.device_id, &push, state.clock.now())
        .await?;
    Ok(())
}

/// A `CheckOut`: the person removed the MDM profile, so the phone's identity is revoked at once
/// (as municipal IT revoking it would) and it counts as not enrolled; the compliance judge,
/// seeing no valid certificate, finds it non-compliant ("it must enroll again"), and its
/// provider's IT contacts are told at once, like any compliance alert, without waiting for the
/// grace period: nobody manages that phone any more.
pub async fn check_out(
    state: &AppState,
    source: IpAddr,
    session: &DeviceSession,
    udid: &str,
) -> FlowResult<()> {
    same_phone(state, session, udid).await?;
    let now = state.clock.now();
    let event = device_event(
        Some(session.device_id),
        session.provider_id,
        source,
        "device.check_out",
        Outcome::Success,
        serde_json::json!({ "certificate_serial": session.certificate_serial }),
    );
    state
        .store
        .check_out_apple_device(session.device_id, now, event)
        .await?;
    state.profile_ledger.forget(session.device_id);
    let device = state
        .store
        .device(crate::domain::role::Scope::Everything, session.device_id)
        .await?;
    let Some(facts) = device.reported_facts() else {
        return Ok(());
    };
    let phone = crate::state::policy_board::Phone {
        device_id: device.id,
        platform: device.platform,
        provider_id: device.provider_id,
        model_id: device.model_id,
        certificate_valid: false,
    };
    super::compliance::judge_and_record(state, phone, &facts, now).await?;
    if let Some(record) = state.store.compliance_record(device.id).await? {
        let language = state.language().await?;
        super::compliance::alert(state, &record, language, now, "compliance.checked_out").await?;
    }
    Ok(())
}

/// What an enrollment profile for a token needs: the push topic, and the name the phone puts
/// in its SCEP request.
#[derive(Debug, Clone)]
pub struct ProfileGrant {
    pub topic: String,
    pub subject: String,
}

/// Whether an enrollment profile may be handed out for this token: it must be usable (not
/// used, not expired, made for iPhones; the download does not use it up, SCEP does) and the
/// operator must have a push certificate that has not run out.
pub async fn profile_grant(
    state: &AppState,
    source: IpAddr,
    secret: &str,
) -> FlowResult<ProfileGrant> {
    let token = usable_token(state, source, secret, Channel::AppleMdm).await?;
    let push = state.ca.push_certificate().map_err(|e| {
        FlowError::Store(StoreError::Unsupported(format!(
            "the MDM push certificate cannot be read: {e}"
        )))
    })?;
    let now = super::enrollment::to_offset(state.clock.now());
    match push {
        None => Err(FlowError::rejected(
            RejectionClass::Conflict,
            "push-certificate-missing",
            "No MDM push certificate",
            "iPhones cannot enroll until the operator admin uploads the MDM push certificate from Apple's push certificates portal (PUT /api/v1/push-certificate, or `mdm-server push-certificate`)",
        )),
        Some(p) if p.not_after <= now => Err(FlowError::rejected(
            RejectionClass::Conflict,
            "push-certificate-expired",
            "The MDM push certificate has run out",
            format!(
                "the MDM push certificate ran out on {}; renew it at Apple's push certificates portal and upload it again",
                p.not_after.date()
            ),
        )),
        Some(p) => Ok(ProfileGrant {
            topic: p.topic,
            subject: format!("iPhone (token {})", token.id),
        }),
    }
}

/// The enrollment profile for a token's `secret` (the SCEP challenge): the device CA's root,
/// SCEP, and the MDM payload with the push topic.
pub fn enrollment_profile(
    state: &AppState,
    secret: &str,
    grant: &ProfileGrant,
) -> plist::Dictionary {
    let device = state.device_url.trim_end_matches('/');
    profiles::apple::enrollment_profile(profiles::apple::Enrollment {
        id: profiles::apple::ProfileIdentity {
            identifier: "se.kommun.mdm.enrollment",
            organisation: &state.config.operator_name,
            display_name: "Kommunens enhetshantering",
        },
        root_der: state.ca.root_der(),
        scep_url: &format!("{device}/scep"),
        challenge: secret,
        subject: &grant.subject,
        server_url: &format!("{device}/mdm/connect"),
        checkin_url: &format!("{device}/mdm/checkin"),
        topic: &grant.topic,
    })
}

/// A configuration profile signed by the device CA's profile signer (CMS SignedData), as an
/// iPhone installs it.
pub fn sign_profile(state: &AppState, profile: &plist::Dictionary) -> FlowResult<Vec<u8>> {
    let failed = |e: String| {
        FlowError::Store(StoreError::Unsupported(format!(
            "the profile cannot be signed: {e}"
        )))
    };
    let signer = state
        .ca
        .profile_signer(&format!("{} profile signing", state.config.operator_name))
        .map_err(|e| failed(e.to_string()))?;
    profiles::apple::sign(
        &profiles::apple::to_xml(profile),
        &signer.chain_pem,
        &signer.key_der,
    )
    .map_err(|e| failed(e.to_string()))
}

/// A SCEP or check-in message that failed before any token or identity was looked at (a bad
/// signature, an envelope for someone else): audited, so that municipal IT sees attempts.
pub async fn refused_message(
    state: &AppState,
    source: IpAddr,
    action: &str,
    reason: &str,
) -> FlowResult<()> {
    let event = device_event(
        None,
        None,
        source,
        action,
        Outcome::Denied,
        serde_json::json!({ "reason": reason }),
    );
    state.store.append_audit(event, state.clock.now()).await?;
    Ok(())
}

/// A push certificate as an operator admin sends it.
#[derive(Clone)]
pub enum PushUpload {
    Pem { certificate: String, key: String },
    Pkcs12 { der: Vec<u8>, password: String },
}

impl std::fmt::Debug for PushUpload {
    // The key and the password stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushUpload::Pem { .. } => "PushUpload::Pem",
            PushUpload::Pkcs12 { .. } => "PushUpload::Pkcs12",
        })
    }
}

/// Checks an uploaded MDM push certificate and keeps it in place of the one before. A new
/// certificate must keep the topic while iPhones are enrolled under it: phones enrolled with
/// one topic answer pushes for that topic only, so a new topic would orphan them all (renewing
/// at Apple's portal keeps the topic; a new certificate there does not).
pub async fn upload_push_certificate(
    ca: &enrollment::DeviceCa,
    store: &dyn crate::store::Store,
    upload: &PushUpload,
    now: chrono::DateTime<chrono::Utc>,
    event: crate::domain::audit::AuditEvent,
) -> FlowResult<enrollment::push_certificate::PushCertificate> {
    use enrollment::push_certificate::{check_push_certificate, check_push_pkcs12};
    let at = super::enrollment::to_offset(now);
    let checked = match upload {
        PushUpload::Pem { certificate, key } => check_push_certificate(certificate, key, at),
        PushUpload::Pkcs12 { der, password } => check_push_pkcs12(der, password, at),
    }
    .map_err(|e| {
        FlowError::rejected(
            RejectionClass::Unprocessable,
            "push-certificate-invalid",
            "Push certificate refused",
            e.to_string(),
        )
    })?;
    let kept = ca.push_certificate().ok().flatten();
    if let Some(old) = kept.filter(|old| old.topic != checked.topic) {
        let enrolled = store.enrolled_apple_devices().await?;
        if enrolled > 0 {
            return Err(FlowError::rejected(
                RejectionClass::Conflict,
                "push-certificate-topic-changed",
                "Push certificate for another topic",
                format!(
                    "{enrolled} iPhones are enrolled under the topic {}; this certificate is for {}. Renew the existing certificate at Apple's push certificates portal instead of making a new one",
                    old.topic, checked.topic
                ),
            ));
        }
    }
    ca.keep_push_certificate(&checked).map_err(|e| {
        FlowError::Store(StoreError::Unsupported(format!(
            "the push certificate cannot be kept: {e}"
        )))
    })?;
    store
        .append_audit(
            event.details(serde_json::json!({
                "topic": checked.topic,
                "subject": checked.subject,
                "not_after": checked.not_after.date().to_string(),
            })),
            now,
        )
        .await?;
    Ok(checked)
}
