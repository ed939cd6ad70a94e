//! An enrolled iPhone on the connect endpoint: its answers are recorded through the same flow
//! as an agent's, what they tell of the phone becomes its facts through the same steps as an
//! agent's report, and it is handed its next command, one per request as Apple's protocol has
//! it. Two things happen here that the queue does not hold:
//!
//! - an inventory refresh is four questions to an iPhone (`DeviceInformation`, `SecurityInfo`,
//!   `ProfileList`, `InstalledApplicationList`), asked one after the other under the queued
//!   command's id with a step after a dot (`42`, `42.security`, `42.profiles`, `42.apps`); the
//!   command is answered when the last is;
//! - the standard profile of the phone's policy as it stands is sent (`profile.{PayloadUUID}`)
//!   whenever the phone does not have it, followed by a `SecurityInfo`
//!   (`profile.{PayloadUUID}.security`) to learn whether its passcode meets it. Which profile a
//!   phone has is kept in memory ([`crate::state::profile_ledger`]), so an `Idle` costs no
//!   database write.

use chrono::Duration;

use super::{FlowError, FlowResult};
use crate::state::profile_ledger::Standing;
use crate::state::AppState;
use crate::store::DeviceSession;
use agent_protocol::{CommandAction, CommandResult, CommandStatus};
use profiles::apple_checkin::{ConnectMessage, ConnectStatus};
use profiles::apple_commands::{AppStoreApp, AppleCommand};

/// What an answer's `CommandUUID` names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Quoted {
    /// A queued command (its id) at one of its steps.
    Queued(i64, Step),
    /// The standard profile with this `PayloadUUID`: its installation, or the `SecurityInfo`
    /// asked after it.
    Profile(String, ProfileStep),
}

/// The questions of an inventory refresh, in order; every other command has only `First`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    First,
    Security,
    Profiles,
    Apps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProfileStep {
    Install,
    Security,
}

impl Step {
    const SUFFIXES: [(Step, &'static str); 3] = [
        (Step::Security, "security"),
        (Step::Profiles, "profiles"),
        (Step::Apps, "apps"),
    ];

    /// The step after this one, for an acknowledged answer: a `DeviceInformation` answer
    /// (it carries `QueryResponses`) goes on to `SecurityInfo`.
    fn next(self, message: &ConnectMessage) -> Option<Step> {
        match self {
            Step::First => message.query_responses.as_ref().map(|_| Step::Security),
            Step::Security => Some(Step::Profiles),
            Step::Profiles => Some(Step::Apps),
            Step::Apps => None,
        }
    }

    fn command(self) -> AppleCommand {
        match self {
            Step::First => AppleCommand::RefreshInformation,
            Step::Security => AppleCommand::SecurityInfo,
            Step::Profiles => AppleCommand::ProfileList,
            Step::Apps => AppleCommand::InstalledApplicationList,
        }
    }

    fn uuid(self, id: i64) -> String {
        match Step::SUFFIXES.iter().find(|(s, _)| *s == self) {
            Some((_, suffix)) => format!("{id}.{suffix}"),
            None => id.to_string(),
        }
    }
}

impl Quoted {
    fn parse(uuid: &str) -> Option<Quoted> {
        if let Some(profile) = uuid.strip_prefix("profile.") {
            return Some(match profile.strip_suffix(".security") {
                Some(p) => Quoted::Profile(p.to_string(), ProfileStep::Security),
                None => Quoted::Profile(profile.to_string(), ProfileStep::Install),
            });
        }
        let (id, step) = match uuid.split_once('.') {
            None => (uuid, Step::First),
            Some((id, suffix)) => (
                id,
                Step::SUFFIXES
                    .iter()
                    .find(|(_, s)| *s == suffix)
                    .map(|(step, _)| *step)?,
            ),
        };
        Some(Quoted::Queued(id.parse().ok()?, step))
    }
}

/// An iPhone on the connect endpoint: its answer to what it was last given is taken, and it is
/// given what comes next as Apple's plist; `None` when nothing waits (or it just said "not
/// now"). An `Idle` with nothing to do writes nothing but its check-in time, in the next batch.
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
        let acknowledged = result.status == CommandStatus::Acknowledged;
        let quoted = message
            .command_uuid
            .as_deref()
            .and_then(Quoted::parse)
            .ok_or_else(|| {
                FlowError::invalid(
                    "CommandUUID",
                    "an answer quotes the CommandUUID of a command this server sent",
                )
            })?;
        match quoted {
            Quoted::Queued(id, step) => {
                let next = step.next(message).filter(|_| acknowledged);
                if let Some(next) = next {
                    sent_to_this_phone(state, session, id).await?;
                    take_answers(state, session, peer, message, now).await?;
                    return Ok(Some(next.command().to_plist(&next.uuid(id))));
                }
                let recorded =
                    super::command_result::record(state, session, peer.ip(), id, &result).await?;
                if acknowledged && recorded.kind == crate::domain::command::CommandKind::Wipe {
                    // Erased: its identity has ended and the profiles it had are gone.
                    state.profile_ledger.forget(session.device_id);
                    return Ok(None);
                }
                if acknowledged {
                    take_answers(state, session, peer, message, now).await?;
                }
                if result.status == CommandStatus::NotNow {
                    return Ok(None);
                }
            }
            Quoted::Profile(uuid, ProfileStep::Install) if acknowledged => {
                state
                    .profile_ledger
                    .learn(session.device_id, Some(uuid.clone()));
                let uuid = format!("profile.{uuid}.security");
                return Ok(Some(AppleCommand::SecurityInfo.to_plist(&uuid)));
            }
            Quoted::Profile(uuid, ProfileStep::Install) => {
                tracing::warn!(
                    device = session.device_id,
                    profile = uuid,
                    error = result.error.as_deref().unwrap_or("not now"),
                    "an iPhone did not install its standard profile; it is sent again later"
                );
                if result.status == CommandStatus::NotNow {
                    return Ok(None);
                }
            }
            Quoted::Profile(uuid, ProfileStep::Security) => {
                if acknowledged {
                    // It acknowledged installing the profile: that is what it has now.
                    let installed = Some(uuid.as_str());
                    take_answers_with(state, session, peer, message, installed, now).await?;
                }
            }
        }
    }
    if let Some(install) = profile_due(state, session, now).await? {
        return Ok(Some(install));
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

/// How many iPhones one round asks for their inventory at most (the next round takes the rest).
const INVENTORY_PER_ROUND: i64 = 5_000;

/// Asks every iPhone not asked for its inventory within `apple.inventory_interval_hours` (its
/// enrollment asked, and so does anyone who queues a refresh); returns how many were asked.
pub async fn refresh_due_inventories(
    state: &AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowResult<usize> {
    let hours = i64::from(state.config.apple.inventory_interval_hours);
    let due = state
        .store
        .apple_devices_due_inventory(now - Duration::hours(hours), INVENTORY_PER_ROUND)
        .await?;
    for device in &due {
        ask_for_inventory(state, *device).await?;
    }
    Ok(due.len())
}

/// A policy layer changed: the iPhones it reaches are woken, and on connecting each is sent
/// the standard profile of its policy as it now stands.
pub async fn policy_changed(
    state: &AppState,
    scope: crate::store::policies::LayerScope,
) -> FlowResult<()> {
    use crate::store::policies::LayerScope;
    let phones = match scope {
        LayerScope::Operator => state.store.apple_device_ids(None).await?,
        LayerScope::Provider(provider) => state.store.apple_device_ids(Some(provider)).await?,
        LayerScope::Device(device) => vec![device],
    };
    state.command_board.wake(phones);
    Ok(())
}

/// What the phone last reported (its facts as stored), if anything.
async fn last_facts(
    state: &AppState,
    session: &DeviceSession,
) -> FlowResult<Option<agent_protocol::DeviceFacts>> {
    Ok(state
        .store
        .device(crate::domain::role::Scope::Everything, session.device_id)
        .await?
        .reported_facts())
}

/// An inventory step may go on only for a command sent to this phone and not yet answered.
async fn sent_to_this_phone(state: &AppState, session: &DeviceSession, id: i64) -> FlowResult<()> {
    use crate::domain::command::CommandState;
    let command = state
        .store
        .command(crate::domain::role::Scope::Everything, id)
        .await
        .ok()
        .filter(|c| c.device_id == session.device_id);
    match command {
        Some(c) if c.state == CommandState::Sent => Ok(()),
        Some(_) => Err(FlowError::rejected(
            super::RejectionClass::Conflict,
            "command-not-sent",
            "The command is not waiting for this phone's answer",
            format!("command {id} is not waiting for an answer from this phone"),
        )),
        None => Err(FlowError::rejected(
            super::RejectionClass::NotFound,
            "command-unknown",
            "No such command for this phone",
            format!("this phone was never sent command {id}"),
        )),
    }
}

/// The standard profile, signed, when the phone does not have the one of its policy as it
/// stands and was not sent it a moment ago.
async fn profile_due(
    state: &AppState,
    session: &DeviceSession,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowResult<Option<Vec<u8>>> {
    let wanted = state.policy_board.standard_profile(
        session.provider_id,
        session.device_id,
        &state.config.operator_name,
    );
    let ledger = &state.profile_ledger;
    match ledger.standing(session.device_id, &wanted.uuid, now) {
        Standing::Settled => return Ok(None),
        Standing::Due => {}
        Standing::Unknown => {
            let installed = last_facts(state, session)
                .await?
                .and_then(|f| f.pin.by_profile)
                .and_then(|p| p.installed_profile);
            ledger.learn(session.device_id, installed);
            if ledger.standing(session.device_id, &wanted.uuid, now) == Standing::Settled {
                return Ok(None);
            }
        }
    }
    let payload = match wanted.signed.get() {
        Some(signed) => signed.clone(),
        None => {
            let signed = super::apple::sign_profile(state, &wanted.profile)?;
            let _ = wanted.signed.set(signed.clone());
            signed
        }
    };
    ledger.sent(session.device_id, &wanted.uuid, now);
    let uuid = format!("profile.{}", wanted.uuid);
    Ok(Some(
        AppleCommand::InstallProfile { payload }.to_plist(&uuid),
    ))
}

/// What an acknowledged answer tells of the phone (`QueryResponses`, `SecurityInfo`,
/// `ProfileList`, `InstalledApplicationList`) folded into its last facts, which then go through
/// the same steps as an agent's report (record check, SIM, lost case, compliance).
async fn take_answers(
    state: &AppState,
    session: &DeviceSession,
    peer: std::net::SocketAddr,
    message: &ConnectMessage,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowResult<()> {
    take_answers_with(state, session, peer, message, None, now).await
}

/// The same, knowing besides that the phone has the standard profile `installed`.
async fn take_answers_with(
    state: &AppState,
    session: &DeviceSession,
    peer: std::net::SocketAddr,
    message: &ConnectMessage,
    installed: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowResult<()> {
    use profiles::apple_checkin as apple;
    let carries = message.query_responses.is_some()
        || message.security_info.is_some()
        || message.profile_list.is_some()
        || message.installed_application_list.is_some();
    if !carries {
        return Ok(());
    }
    let Some(mut facts) = last_facts(state, session).await? else {
        tracing::warn!(
            device = session.device_id,
            "no facts to fold an iPhone's answer into"
        );
        return Ok(());
    };
    if let Some(responses) = &message.query_responses {
        if let Some(supervised) = responses
            .get("IsSupervised")
            .and_then(plist::Value::as_boolean)
        {
            state
                .store
                .set_apple_supervised(session.device_id, supervised)
                .await?;
        }
        apple::information_into_facts(responses, &mut facts);
    }
    if let Some(info) = &message.security_info {
        apple::security_into_facts(info, &mut facts);
    }
    if let Some(list) = &message.profile_list {
        apple::profiles_into_facts(list, &mut facts);
        let installed = facts
            .pin
            .by_profile
            .as_ref()
            .and_then(|p| p.installed_profile.clone());
        state.profile_ledger.learn(session.device_id, installed);
    }
    if let Some(list) = &message.installed_application_list {
        apple::apps_into_facts(list, &mut facts);
        install_missing_apps(state, session, &facts, now).await?;
    }
    if let Some(uuid) = installed {
        facts
            .pin
            .by_profile
            .get_or_insert_with(Default::default)
            .installed_profile = Some(uuid.to_string());
    }
    super::checkin::take_facts(state, session, peer, &mut facts, false, now).await
}

/// Asks a newly enrolled iPhone for its inventory (OS, model, IMEI, SIM, battery, storage):
/// what `Authenticate` says is not all the server keeps.
pub(super) async fn ask_for_inventory(state: &AppState, device_id: i64) -> FlowResult<()> {
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

/// Queues `InstallApplication` for each app the phone's policy requires that its app list
/// lacks, unless one is already waiting: iOS installs apps only when told to.
async fn install_missing_apps(
    state: &AppState,
    session: &DeviceSession,
    facts: &agent_protocol::DeviceFacts,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowResult<()> {
    use crate::domain::command::{CommandKind, CommandState, DEFAULT_EXPIRY_HOURS};
    let missing: Vec<_> = state
        .policy_board
        .required_iphone_apps(session.provider_id, session.device_id)
        .into_iter()
        .filter(|required| {
            !facts
                .installed_apps
                .iter()
                .any(|i| i.id == required.bundle_id)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let waiting: Vec<CommandAction> = state
        .store
        .list_commands(
            crate::domain::role::Scope::Everything,
            &crate::store::commands::CommandFilter {
                device_id: Some(session.device_id),
                limit: 500,
                ..Default::default()
            },
        )
        .await?
        .into_iter()
        .filter(|c| {
            c.kind == CommandKind::InstallApp
                && matches!(
                    c.state,
                    CommandState::Queued | CommandState::Sent | CommandState::NotNow
                )
        })
        .filter_map(|c| serde_json::from_str(&c.payload).ok())
        .collect();
    for app in missing {
        let action = CommandAction::InstallApp {
            app: app.key.clone(),
            identifier: app.bundle_id.clone(),
        };
        if waiting.contains(&action) {
            continue;
        }
        let command = crate::store::commands::NewCommand {
            device_id: session.device_id,
            kind: CommandKind::InstallApp,
            payload: serde_json::to_string(&action).unwrap_or_default(),
            priority: 1,
            expires_at: now + Duration::hours(i64::from(DEFAULT_EXPIRY_HOURS)),
            created_by: None,
        };
        let event = crate::domain::audit::AuditEvent::unattended("server", "command.queue")
            .details(serde_json::json!({
                "device_id": session.device_id,
                "kind": "install_app",
                "app": app.key,
                "reason": "required by the phone's policy and missing from its app list",
            }));
        state.store.queue_command(&command, now, event).await?;
        state.command_board.mark(session.device_id);
    }
    Ok(())
}

/// The command as this iPhone can take it: lost mode needs a supervised iPhone, and an erase
/// carries Return to Service when the iPhone's iOS has it.
async fn for_this_iphone(
    state: &AppState,
    session: &DeviceSession,
    id: i64,
    action: &CommandAction,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowResult<AppleCommand> {
    match action {
        CommandAction::Wipe => erase(state, session, now).await,
        CommandAction::LostModeOn { .. } => lost_mode(state, session, id, action, now).await,
        CommandAction::InstallApp { app, .. } => {
            let mut command = apple_command(state, action);
            // The managed settings the phone's policy gives the app go with it.
            let settings = state
                .policy_board
                .required_iphone_apps(session.provider_id, session.device_id)
                .into_iter()
                .find(|required| required.key == *app)
                .map(|required| required.settings)
                .filter(|settings| !settings.is_empty());
            if let (AppleCommand::InstallApp { configuration, .. }, Some(settings)) =
                (&mut command, settings)
            {
                *configuration = Some(
                    settings
                        .into_iter()
                        .map(|(k, v)| (k, plist::Value::String(v)))
                        .collect(),
                );
            }
            Ok(command)
        }
        _ => Ok(apple_command(state, action)),
    }
}

/// The iOS that brought Return to Service.
const RETURN_TO_SERVICE_FROM: &str = "17";
/// How long the token in a Return to Service profile lasts (the phone uses it minutes after
/// the erase; a phone that is off when the erase arrives gets it when it comes back).
const RETURN_TO_SERVICE_TOKEN_DAYS: i64 = 30;

/// `EraseDevice`: on iOS 17 and later with Return to Service, the phone setting itself up and
/// enrolling again from an enrollment profile with a token of its own (and the configured
/// Wi-Fi profile), which completes the wipe gate without hands; on older iOS a plain erase,
/// and the phone is enrolled again by hand. Which it was is kept for the history view.
async fn erase(
    state: &AppState,
    session: &DeviceSession,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowResult<AppleCommand> {
    use profiles::version::OsVersion;
    let os = last_facts(state, session)
        .await?
        .map(|f| f.os_version)
        .unwrap_or_default();
    let has_it = matches!(
        (OsVersion::parse(&os), OsVersion::parse(RETURN_TO_SERVICE_FROM)),
        (Ok(have), Ok(from)) if have >= from
    );
    let push = state.ca.push_certificate().ok().flatten();
    let (return_to_service, how) = match push.filter(|_| has_it) {
        Some(push) => (
            Some(return_to_service(state, session, &push.topic, now).await?),
            "return_to_service",
        ),
        None => (None, "erase_only"),
    };
    state
        .store
        .note_wipe_delivery(session.device_id, how)
        .await?;
    Ok(AppleCommand::Erase { return_to_service })
}

/// What an erased iPhone sets itself up with: a signed enrollment profile whose SCEP challenge
/// is a new single-use token bound to this phone, and the configured Wi-Fi profile.
async fn return_to_service(
    state: &AppState,
    session: &DeviceSession,
    topic: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowResult<profiles::apple_commands::ReturnToService> {
    use crate::domain::device::Channel;
    let invite = enrollment::EnrollmentInvite::new(&state.device_url, &state.ca.root_fingerprint());
    let token = crate::store::NewEnrollmentToken {
        token_hash: crate::auth::hash_token(&invite.secret),
        device_id: Some(session.device_id),
        provider_id: None,
        channel: Channel::AppleMdm,
        created_by: None,
        expires_at: now + Duration::days(RETURN_TO_SERVICE_TOKEN_DAYS),
    };
    let event = crate::domain::audit::AuditEvent::unattended("server", "enrollment_token.create")
        .details(serde_json::json!({
            "device_id": session.device_id,
            "channel": Channel::AppleMdm.as_str(),
            "days": RETURN_TO_SERVICE_TOKEN_DAYS,
            "reason": "return_to_service",
        }));
    let id = state
        .store
        .create_enrollment_token(&token, now, event)
        .await?;
    let grant = super::apple::ProfileGrant {
        topic: topic.to_string(),
        subject: format!("iPhone (token {id})"),
    };
    let profile = super::apple::enrollment_profile(state, &invite.secret, &grant);
    let wifi = match &state.config.apple.return_to_service_wifi_profile {
        None => None,
        Some(file) => Some(std::fs::read(file).map_err(|e| {
            crate::store::StoreError::Unsupported(format!(
                "apple.return_to_service_wifi_profile {} cannot be read: {e}",
                file.display()
            ))
        })?),
    };
    Ok(profiles::apple_commands::ReturnToService {
        mdm_profile: super::apple::sign_profile(state, &profile)?,
        wifi_profile: wifi,
    })
}

/// Lost mode needs a supervised iPhone: one that is not (or has not said) gets a lock with the
/// same message and number, and the lost case's timeline says so.
async fn lost_mode(
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
        CommandAction::Wipe => AppleCommand::Erase {
            return_to_service: None,
        },
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
