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
use agent_protocol::{CommandAction, CommandResult, CommandStatus, DeviceFacts};
use profiles::apple_checkin::{Authenticate, ConnectMessage, ConnectStatus, TokenUpdate};
use profiles::apple_commands::{AppStoreApp, AppleCommand};

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
        Ok(()) => ask_for_inventory(state, device.id).await,
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

/// An iPhone on the connect endpoint: its answer to the command it was last given is recorded
/// through the same flow as an agent's (idempotent by `CommandUUID`, which is the command's id),
/// and it is given its next command, one per request as Apple's protocol has it, rendered as
/// Apple's plist; `None` when nothing waits (or it just said "not now"). An `Idle` with nothing
/// queued writes nothing but its check-in time, in the next batch.
pub async fn connect(
    state: &AppState,
    session: &DeviceSession,
    peer: std::net::SocketAddr,
    message: &ConnectMessage,
) -> FlowResult<Option<Vec<u8>>> {
    // The certificate names the phone; the UDID in the message is not looked up on this, the
    // busiest request (`TokenUpdate` and `CheckOut` check it).
    let now = state.clock.now();
    state.checkin_times.note(session.device_id, now);
    if let Some(result) = command_result(message)? {
        let id = command_id(message)?;
        super::command_result::record(state, session, peer.ip(), id, &result).await?;
        if result.status == CommandStatus::NotNow {
            return Ok(None);
        }
        if let Some(responses) = &message.query_responses {
            information(state, session, peer, responses, now).await?;
        }
    }
    if !state.command_board.may_have(session.device_id) {
        return Ok(None);
    }
    let taken = state.store.take_commands(session.device_id, now, 1).await?;
    let Some((id, payload)) = taken.into_iter().next() else {
        return Ok(None);
    };
    match serde_json::from_str::<CommandAction>(&payload) {
        Ok(action) => Ok(Some(
            for_this_iphone(state, session, id, &action, now)
                .await?
                .to_plist(&id.to_string()),
        )),
        Err(e) => {
            tracing::error!(command = id, error = %e, "stored command is not readable");
            Ok(None)
        }
    }
}

/// A `DeviceInformation` answer: folded into the phone's last facts, which then go through the
/// same steps as an agent's report (record check, SIM, lost case, compliance).
async fn information(
    state: &AppState,
    session: &DeviceSession,
    peer: std::net::SocketAddr,
    responses: &plist::Dictionary,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowResult<()> {
    let device = state
        .store
        .device(crate::domain::role::Scope::Everything, session.device_id)
        .await?;
    let Some(mut facts) = device.reported_facts() else {
        tracing::warn!(
            device = session.device_id,
            "no facts to fold an inventory answer into"
        );
        return Ok(());
    };
    if let Some(supervised) = responses
        .get("IsSupervised")
        .and_then(plist::Value::as_boolean)
    {
        state
            .store
            .set_apple_supervised(session.device_id, supervised)
            .await?;
    }
    profiles::apple_checkin::information_into_facts(responses, &mut facts);
    super::checkin::take_facts(state, session, peer, &mut facts, false, now).await
}

/// Asks a newly enrolled iPhone for its inventory (OS, model, IMEI, SIM, battery, storage):
/// what `Authenticate` says is not all the server keeps.
async fn ask_for_inventory(state: &AppState, device_id: i64) -> FlowResult<()> {
    use crate::domain::command::{CommandKind, DEFAULT_EXPIRY_HOURS};
    let now = state.clock.now();
    let command = crate::store::commands::NewCommand {
        device_id,
        kind: CommandKind::RefreshInformation,
        payload: serde_json::to_string(&CommandAction::RefreshInformation).unwrap_or_default(),
        priority: 1,
        expires_at: now + Duration::hours(i64::from(DEFAULT_EXPIRY_HOURS)),
        created_by: None,
    };
    let event = crate::domain::audit::AuditEvent::unattended("server", "command.queue")
        .details(serde_json::json!({ "device_id": device_id, "kind": "refresh_information" }));
    state.store.queue_command(&command, now, event).await?;
    state.command_board.mark(device_id);
    Ok(())
}

/// The command as this iPhone can take it: lost mode needs a supervised iPhone, so one that is
/// not (or has not said) gets a lock with the same message and number, and the lost case's
/// timeline says so.
async fn for_this_iphone(
    state: &AppState,
    session: &DeviceSession,
    id: i64,
    action: &CommandAction,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowResult<AppleCommand> {
    let command = apple_command(state, action);
    let AppleCommand::LostModeOn {
        message,
        phone_number,
        ..
    } = &command
    else {
        return Ok(command);
    };
    let supervised = state
        .store
        .apple_device(session.device_id)
        .await?
        .and_then(|d| d.supervised);
    if supervised == Some(true) {
        return Ok(command);
    }
    state
        .store
        .note_on_open_case(
            session.device_id,
            "locked_instead_of_lost_mode",
            &serde_json::json!({
                "command_id": id,
                "reason": "the iPhone is not supervised, and lost mode needs supervision: it was locked with the same message and number",
            }),
            now,
        )
        .await?;
    Ok(AppleCommand::Lock {
        message: message.clone(),
        phone_number: phone_number.clone(),
    })
}

/// The queue's answer for a connect message; `None` for `Idle`.
fn command_result(message: &ConnectMessage) -> FlowResult<Option<CommandResult>> {
    let (status, error) = match message.status {
        ConnectStatus::Idle => return Ok(None),
        ConnectStatus::Acknowledged => (CommandStatus::Acknowledged, None),
        ConnectStatus::NotNow => (CommandStatus::NotNow, None),
        ConnectStatus::Error => (
            CommandStatus::Error,
            Some(
                message
                    .error_words()
                    .unwrap_or_else(|| "the iPhone reported an error without a reason".into()),
            ),
        ),
        ConnectStatus::CommandFormatError => (
            CommandStatus::Error,
            Some("the iPhone could not read the command (CommandFormatError)".into()),
        ),
    };
    Ok(Some(CommandResult { status, error }))
}

/// The queue's id of the command an answer quotes.
fn command_id(message: &ConnectMessage) -> FlowResult<i64> {
    message
        .command_uuid
        .as_deref()
        .and_then(|uuid| uuid.parse().ok())
        .ok_or_else(|| {
            FlowError::invalid(
                "CommandUUID",
                "an answer quotes the CommandUUID of a command this server sent",
            )
        })
}

/// A queued command as Apple's protocol says it. What a lost phone's lock screen shows is
/// decided where the command was queued; here only the words change.
pub fn apple_command(state: &AppState, action: &CommandAction) -> AppleCommand {
    match action.clone() {
        CommandAction::Lock {
            message,
            phone_number,
        } => AppleCommand::Lock {
            message,
            phone_number,
        },
        CommandAction::Wipe => AppleCommand::Erase,
        CommandAction::LostModeOn {
            message,
            phone_number,
        } => AppleCommand::LostModeOn {
            message,
            phone_number,
            footnote: Some(state.config.operator_name.clone()),
        },
        CommandAction::LostModeOff => AppleCommand::LostModeOff,
        CommandAction::InstallApp { app, identifier } => AppleCommand::InstallApp {
            app: match state.policy_board.app_store_id(&app) {
                Some(id) => AppStoreApp::StoreId(id),
                None => AppStoreApp::BundleId(identifier),
            },
            configuration: None,
        },
        CommandAction::RemoveApp { identifier, .. } => AppleCommand::RemoveApp {
            bundle_id: identifier,
        },
        CommandAction::RefreshInformation => AppleCommand::RefreshInformation,
        CommandAction::Restart => AppleCommand::Restart,
    }
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
