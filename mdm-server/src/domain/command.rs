//! Commands to phones: what may be sent, in which order, how long it waits, and what a
//! phone's answer does to it.
//!
//! A command goes `queued → sent → acknowledged | error`, or `not_now` (the phone was busy; it
//! goes out again later), or ends `expired` (never answered in time) or `cancelled` (by a
//! person, or purged because the phone was wiped or enrolled again). Delivery is at least once:
//! a sent command with no answer goes out again, and the phone answers a repeat from its
//! record, by command id.

use agent_protocol::{CommandAction, CommandStatus};
use chrono::{DateTime, Duration, Utc};

use super::contact::MobileNumber;
use super::device::DeviceStatus;
use super::DomainError;

/// Commands per check-in answer; the rest go at the next check-in.
pub const PER_CHECKIN: u32 = 10;
/// A sent command with no answer goes to the phone again after this long.
pub const REDELIVER_AFTER: Duration = Duration::minutes(5);
/// How long a command waits for its phone unless the sender says otherwise.
pub const DEFAULT_EXPIRY_HOURS: u32 = 7 * 24;
/// The longest a command may wait.
pub const MAX_EXPIRY_HOURS: u32 = 90 * 24;
/// The lock-screen and lost-mode message, in characters (what fits on a lock screen).
pub const MAX_MESSAGE_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandState {
    Queued,
    Sent,
    Acknowledged,
    Error,
    NotNow,
    Expired,
    Cancelled,
}

pub const ALL_STATES: [CommandState; 7] = [
    CommandState::Queued,
    CommandState::Sent,
    CommandState::Acknowledged,
    CommandState::Error,
    CommandState::NotNow,
    CommandState::Expired,
    CommandState::Cancelled,
];

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::Sent => "sent",
            CommandState::Acknowledged => "acknowledged",
            CommandState::Error => "error",
            CommandState::NotNow => "not_now",
            CommandState::Expired => "expired",
            CommandState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        ALL_STATES.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            DomainError::invalid(
                "state",
                format!("unknown command state '{s}'; expected one of queued, sent, acknowledged, error, not_now, expired, cancelled"),
            )
        })
    }

    /// Still waiting for the phone: in the queue, on its way, or put off by the phone.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            CommandState::Queued | CommandState::Sent | CommandState::NotNow
        )
    }

    /// A person may still take it back: the phone has not been sent it (or put it off).
    pub fn is_cancellable(self) -> bool {
        matches!(self, CommandState::Queued | CommandState::NotNow)
    }
}

/// What the sender asks for: which command, and its details as typed.
#[derive(Debug, Clone, Default)]
pub struct CommandRequest {
    pub kind: String,
    pub message: Option<String>,
    pub phone_number: Option<String>,
    /// The app's key in the catalogue, for installs and removals.
    pub app: Option<String>,
    pub priority: Option<String>,
    pub expires_in_hours: Option<u32>,
}

/// What a command asks the phone to do. Stored and named in the API by [`CommandKind::as_str`];
/// a stored kind this server does not know is an error, never another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    Lock,
    Wipe,
    LostModeOn,
    LostModeOff,
    InstallApp,
    RemoveApp,
    RefreshInformation,
    Restart,
}

impl CommandKind {
    pub const ALL: [CommandKind; 8] = [
        CommandKind::Lock,
        CommandKind::Wipe,
        CommandKind::LostModeOn,
        CommandKind::LostModeOff,
        CommandKind::InstallApp,
        CommandKind::RemoveApp,
        CommandKind::RefreshInformation,
        CommandKind::Restart,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Lock => "lock",
            CommandKind::Wipe => "wipe",
            CommandKind::LostModeOn => "lost_mode_on",
            CommandKind::LostModeOff => "lost_mode_off",
            CommandKind::InstallApp => "install_app",
            CommandKind::RemoveApp => "remove_app",
            CommandKind::RefreshInformation => "refresh_information",
            CommandKind::Restart => "restart",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                DomainError::invalid(
                    "kind",
                    format!(
                        "unknown command '{s}'; expected one of {}",
                        Self::ALL.map(CommandKind::as_str).join(", ")
                    ),
                )
            })
    }

    /// Shows a message and a number to call on the lock screen.
    fn takes_text(self) -> bool {
        matches!(self, CommandKind::Lock | CommandKind::LostModeOn)
    }

    /// Names an app of the catalogue.
    fn takes_app(self) -> bool {
        matches!(self, CommandKind::InstallApp | CommandKind::RemoveApp)
    }

    /// Protects a phone that may be in the wrong hands, so it goes first.
    fn protects(self) -> bool {
        matches!(
            self,
            CommandKind::Lock | CommandKind::Wipe | CommandKind::LostModeOn
        )
    }
}

impl std::fmt::Display for CommandKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of a command that do not depend on the phone: kind, checked text, priority and
/// expiry. App commands are finished per phone by [`CheckedCommand::action_for`], since an app
/// has a different identifier on each platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCommand {
    pub kind: CommandKind,
    message: Option<String>,
    phone_number: Option<String>,
    pub app: Option<String>,
    pub priority: i64,
    pub expires_in: Duration,
}

fn priority_value(kind: CommandKind, requested: Option<&str>) -> Result<i64, DomainError> {
    match requested {
        Some("high") => Ok(2),
        Some("normal") => Ok(1),
        Some("low") => Ok(0),
        Some(other) => Err(DomainError::invalid(
            "priority",
            format!("unknown priority '{other}'; expected high, normal or low"),
        )),
        // What protects a phone that may be in the wrong hands goes first.
        None if kind.protects() => Ok(2),
        None => Ok(1),
    }
}

pub fn priority_name(value: i64) -> &'static str {
    match value {
        2.. => "high",
        1 => "normal",
        _ => "low",
    }
}

fn checked_message(text: Option<&str>) -> Result<Option<String>, DomainError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(DomainError::invalid(
            "message",
            format!("at most {MAX_MESSAGE_CHARS} characters fit on the lock screen"),
        ));
    }
    Ok(Some(text.to_string()))
}

fn checked_phone(text: Option<&str>) -> Result<Option<String>, DomainError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => MobileNumber::parse(t)
            .map(|n| Some(n.as_str().to_string()))
            .map_err(|e| DomainError::invalid("phone_number", e.message().to_string())),
    }
}

impl CommandRequest {
    /// Checks everything that can be checked without the phone.
    pub fn check(&self) -> Result<CheckedCommand, DomainError> {
        let kind = CommandKind::parse(&self.kind)?;
        let takes_text = kind.takes_text();
        let takes_app = kind.takes_app();
        if !takes_text && (self.message.is_some() || self.phone_number.is_some()) {
            return Err(DomainError::invalid(
                "message",
                format!("a {kind} command takes no message or phone number"),
            ));
        }
        if !takes_app && self.app.is_some() {
            return Err(DomainError::invalid(
                "app",
                format!("a {kind} command takes no app"),
            ));
        }
        let message = checked_message(self.message.as_deref())?;
        let phone_number = checked_phone(self.phone_number.as_deref())?;
        if kind == CommandKind::LostModeOn && message.is_none() && phone_number.is_none() {
            return Err(DomainError::invalid(
                "message",
                "lost mode needs a message or a phone number for the finder",
            ));
        }
        let app = self.app.as_deref().map(str::trim).map(str::to_string);
        if takes_app && app.as_deref().is_none_or(str::is_empty) {
            return Err(DomainError::invalid(
                "app",
                format!("a {kind} command names the app, by its catalogue key"),
            ));
        }
        let hours = self.expires_in_hours.unwrap_or(DEFAULT_EXPIRY_HOURS);
        if !(1..=MAX_EXPIRY_HOURS).contains(&hours) {
            return Err(DomainError::invalid(
                "expires_in_hours",
                format!("must be 1 to {MAX_EXPIRY_HOURS} hours"),
            ));
        }
        Ok(CheckedCommand {
            kind,
            message,
            phone_number,
            app,
            priority: priority_value(kind, self.priority.as_deref())?,
            expires_in: Duration::hours(i64::from(hours)),
        })
    }
}

impl CheckedCommand {
    /// The command as the phone receives it. `app_identifier` is the app's package name or
    /// bundle id on this phone's platform; `None` when the app has none there (then an app
    /// command cannot go to this phone).
    pub fn action_for(&self, app_identifier: Option<&str>) -> Option<CommandAction> {
        let app = || {
            Some((
                self.app.clone().unwrap_or_default(),
                app_identifier?.to_string(),
            ))
        };
        Some(match self.kind {
            CommandKind::Lock => CommandAction::Lock {
                message: self.message.clone(),
                phone_number: self.phone_number.clone(),
            },
            CommandKind::Wipe => CommandAction::Wipe,
            CommandKind::LostModeOn => CommandAction::LostModeOn {
                message: self.message.clone(),
                phone_number: self.phone_number.clone(),
            },
            CommandKind::LostModeOff => CommandAction::LostModeOff,
            CommandKind::InstallApp => {
                let (app, identifier) = app()?;
                CommandAction::InstallApp { app, identifier }
            }
            CommandKind::RemoveApp => {
                let (app, identifier) = app()?;
                CommandAction::RemoveApp { app, identifier }
            }
            CommandKind::RefreshInformation => CommandAction::RefreshInformation,
            CommandKind::Restart => CommandAction::Restart,
        })
    }

    /// Whether this command may go to every phone of a provider in one request. A wipe may
    /// not: wiping is decided phone by phone.
    pub fn allowed_in_fan_out(&self) -> Result<(), DomainError> {
        if self.kind == CommandKind::Wipe {
            return Err(DomainError::invalid(
                "kind",
                "a wipe goes to one phone at a time; send it per phone",
            ));
        }
        Ok(())
    }
}

/// A command the server queues on its own (the wipe after a return or at the end of a
/// provider's contract, the lost-mode lock of a lost phone, the wipe when a lost phone is not
/// found in time): checked like one a person sends. These carry no app, so the payload is the
/// same on every platform. Returns the command and its payload.
pub fn automatic(
    kind: CommandKind,
    message: Option<String>,
    phone_number: Option<String>,
) -> Result<(CheckedCommand, String), DomainError> {
    let command = CommandRequest {
        kind: kind.as_str().to_string(),
        message,
        phone_number,
        ..CommandRequest::default()
    }
    .check()?;
    let payload = command
        .action_for(None)
        .and_then(|action| serde_json::to_string(&action).ok())
        .ok_or_else(|| DomainError::invalid("kind", format!("{kind} needs an app")))?;
    Ok((command, payload))
}

/// Why a phone cannot be sent commands.
pub fn check_device(status: DeviceStatus, enrolled: bool) -> Result<(), &'static str> {
    if status == DeviceStatus::Retired {
        return Err("the phone is retired");
    }
    if !enrolled {
        return Err("the phone is not enrolled; it can be sent commands once it enrolls");
    }
    Ok(())
}

/// A phone's status after a wipe it confirmed: a phone that was waiting for its wipe goes back
/// to stock; any other keeps its status (a lost phone stays lost until its case is closed).
pub fn status_after_wipe(status: DeviceStatus) -> DeviceStatus {
    match status {
        DeviceStatus::AwaitingWipe => DeviceStatus::InStock,
        other => other,
    }
}

/// What an answer does beyond the command's own state, done in the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerEffect {
    /// The phone confirmed its wipe: what was queued for it is purged, its identity stops
    /// working, its holder is cleared, it counts as not enrolled, and a phone waiting for the
    /// wipe goes back to stock ([`status_after_wipe`]).
    PhoneWiped,
}

/// What a phone's answer does to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultDecision {
    /// Store the new state; `retry_at` is set for a not-now answer; `effect` is what else the
    /// answer does.
    Record {
        state: CommandState,
        retry_at: Option<DateTime<Utc>>,
        effect: Option<AnswerEffect>,
    },
    /// The same answer arrived before (a repeat after a lost reply): nothing changes.
    AlreadyRecorded,
}

/// Why an answer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultRefusal {
    /// The phone was never sent this command.
    NotSent,
    /// The command already has a different final answer.
    Conflicts(CommandState),
    /// The command was cancelled before the phone answered.
    Cancelled,
}

/// How long a phone that said "not now" waits for the command again: 5 minutes, doubling with
/// every attempt, at most an hour.
pub fn not_now_delay(attempts: i64) -> Duration {
    let doublings = attempts.clamp(1, 5) - 1;
    Duration::minutes((5 * (1i64 << doublings)).min(60))
}

pub fn reported_state(status: CommandStatus) -> CommandState {
    match status {
        CommandStatus::Acknowledged => CommandState::Acknowledged,
        CommandStatus::Error => CommandState::Error,
        CommandStatus::NotNow => CommandState::NotNow,
    }
}

/// Decides what a phone's answer does, given where the command is. Answers are idempotent: the
/// same answer twice changes nothing the second time.
pub fn decide_result(
    kind: CommandKind,
    current: CommandState,
    attempts: i64,
    reported: CommandStatus,
    now: DateTime<Utc>,
) -> Result<ResultDecision, ResultRefusal> {
    let new = reported_state(reported);
    let record = || ResultDecision::Record {
        state: new,
        retry_at: (new == CommandState::NotNow).then(|| now + not_now_delay(attempts)),
        effect: (kind == CommandKind::Wipe && new == CommandState::Acknowledged)
            .then_some(AnswerEffect::PhoneWiped),
    };
    match current {
        CommandState::Queued if attempts == 0 => Err(ResultRefusal::NotSent),
        CommandState::Queued | CommandState::Sent => Ok(record()),
        // Put off, then done (or put off again, which is a repeat).
        CommandState::NotNow if new == CommandState::NotNow => Ok(ResultDecision::AlreadyRecorded),
        CommandState::NotNow => Ok(record()),
        CommandState::Acknowledged | CommandState::Error if current == new => {
            Ok(ResultDecision::AlreadyRecorded)
        }
        CommandState::Acknowledged | CommandState::Error => Err(ResultRefusal::Conflicts(current)),
        // The phone ran it after all, just late: what it did is worth knowing.
        CommandState::Expired if new != CommandState::NotNow => Ok(record()),
        CommandState::Expired => Ok(ResultDecision::AlreadyRecorded),
        CommandState::Cancelled => Err(ResultRefusal::Cancelled),
    }
}

/// The device's error text as stored: trimmed, at most 1,000 characters.
pub fn error_text(text: Option<&str>) -> Option<String> {
    text.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(1000).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: &str) -> CommandRequest {
        CommandRequest {
            kind: kind.into(),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().expect("time")
    }

    #[test]
    fn lock_carries_a_checked_message_and_support_number() {
        let checked = CommandRequest {
            message: Some("  Ring IT-supporten ".into()),
            phone_number: Some("+46 8 123 456 78".into()),
            ..request("lock")
        }
        .check()
        .expect("valid");
        assert_eq!(checked.priority, 2);
        assert_eq!(
            checked.action_for(None),
            Some(CommandAction::Lock {
                message: Some("Ring IT-supporten".into()),
                phone_number: Some("+46812345678".into()),
            })
        );
        let too_long = CommandRequest {
            message: Some("x".repeat(MAX_MESSAGE_CHARS + 1)),
            ..request("lock")
        };
        assert_eq!(too_long.check().expect_err("refused").field(), "message");
        let bad_phone = CommandRequest {
            phone_number: Some("08-123 456".into()),
            ..request("lock")
        };
        assert_eq!(
            bad_phone.check().expect_err("refused").field(),
            "phone_number"
        );
    }

    #[test]
    fn unknown_kinds_and_misplaced_details_are_refused() {
        assert_eq!(
            request("selfdestruct")
                .check()
                .expect_err("refused")
                .field(),
            "kind"
        );
        let wipe_with_app = CommandRequest {
            app: Some("phoniro".into()),
            ..request("wipe")
        };
        assert_eq!(wipe_with_app.check().expect_err("refused").field(), "app");
        assert_eq!(
            request("install_app").check().expect_err("refused").field(),
            "app"
        );
        assert_eq!(
            request("lost_mode_on")
                .check()
                .expect_err("refused")
                .field(),
            "message"
        );
        let priority = CommandRequest {
            priority: Some("urgent".into()),
            ..request("restart")
        };
        assert_eq!(priority.check().expect_err("refused").field(), "priority");
        for hours in [0, MAX_EXPIRY_HOURS + 1] {
            let expiry = CommandRequest {
                expires_in_hours: Some(hours),
                ..request("restart")
            };
            assert_eq!(
                expiry.check().expect_err("refused").field(),
                "expires_in_hours"
            );
        }
    }

    #[test]
    fn protective_commands_go_first_unless_told_otherwise() {
        for kind in ["lock", "wipe", "lost_mode_on"] {
            let mut r = request(kind);
            r.message = (kind == "lost_mode_on").then(|| "Hittad? Ring oss".into());
            assert_eq!(r.check().expect("valid").priority, 2, "{kind}");
        }
        assert_eq!(request("restart").check().expect("valid").priority, 1);
        let low = CommandRequest {
            priority: Some("low".into()),
            ..request("lock")
        };
        assert_eq!(low.check().expect("valid").priority, 0);
        assert_eq!(priority_name(2), "high");
        assert_eq!(priority_name(0), "low");
    }

    #[test]
    fn app_commands_need_the_app_on_the_phones_platform() {
        let checked = CommandRequest {
            app: Some("phoniro".into()),
            ..request("install_app")
        }
        .check()
        .expect("valid");
        assert_eq!(checked.action_for(None), None);
        assert_eq!(
            checked.action_for(Some("se.phoniro.app")),
            Some(CommandAction::InstallApp {
                app: "phoniro".into(),
                identifier: "se.phoniro.app".into()
            })
        );
    }

    #[test]
    fn a_wipe_is_never_fanned_out() {
        assert!(request("wipe")
            .check()
            .expect("valid")
            .allowed_in_fan_out()
            .is_err());
        assert!(request("restart")
            .check()
            .expect("valid")
            .allowed_in_fan_out()
            .is_ok());
    }

    #[test]
    fn commands_need_an_enrolled_phone_in_service() {
        assert!(check_device(DeviceStatus::Leased, true).is_ok());
        assert!(check_device(DeviceStatus::Lost, true).is_ok());
        assert!(check_device(DeviceStatus::Leased, false).is_err());
        assert!(check_device(DeviceStatus::Retired, true).is_err());
    }

    #[test]
    fn a_confirmed_wipe_returns_a_phone_awaiting_it_to_stock() {
        assert_eq!(
            status_after_wipe(DeviceStatus::AwaitingWipe),
            DeviceStatus::InStock
        );
        assert_eq!(status_after_wipe(DeviceStatus::Lost), DeviceStatus::Lost);
    }

    #[test]
    fn answers_move_a_sent_command_and_repeats_change_nothing() {
        use CommandStatus as S;
        let record = |state| {
            Ok(ResultDecision::Record {
                state,
                retry_at: None,
                effect: None,
            })
        };
        assert_eq!(
            decide_result(
                CommandKind::Lock,
                CommandState::Sent,
                1,
                S::Acknowledged,
                now()
            ),
            record(CommandState::Acknowledged)
        );
        assert_eq!(
            decide_result(
                CommandKind::Lock,
                CommandState::Acknowledged,
                1,
                S::Acknowledged,
                now()
            ),
            Ok(ResultDecision::AlreadyRecorded)
        );
        assert_eq!(
            decide_result(
                CommandKind::Lock,
                CommandState::Acknowledged,
                1,
                S::Error,
                now()
            ),
            Err(ResultRefusal::Conflicts(CommandState::Acknowledged))
        );
        assert_eq!(
            decide_result(
                CommandKind::Lock,
                CommandState::Queued,
                0,
                S::Acknowledged,
                now()
            ),
            Err(ResultRefusal::NotSent)
        );
        assert_eq!(
            decide_result(
                CommandKind::Lock,
                CommandState::Cancelled,
                1,
                S::Acknowledged,
                now()
            ),
            Err(ResultRefusal::Cancelled)
        );
        assert_eq!(
            decide_result(CommandKind::Lock, CommandState::Expired, 1, S::Error, now()),
            record(CommandState::Error)
        );
        assert_eq!(
            decide_result(
                CommandKind::Lock,
                CommandState::NotNow,
                1,
                S::Acknowledged,
                now()
            ),
            record(CommandState::Acknowledged)
        );
    }

    #[test]
    fn only_an_acknowledged_wipe_wipes_the_phone() {
        use CommandStatus as S;
        let effect =
            |kind, reported| match decide_result(kind, CommandState::Sent, 1, reported, now()) {
                Ok(ResultDecision::Record { effect, .. }) => effect,
                other => panic!("not recorded: {other:?}"),
            };
        assert_eq!(
            effect(CommandKind::Wipe, S::Acknowledged),
            Some(AnswerEffect::PhoneWiped)
        );
        assert_eq!(effect(CommandKind::Wipe, S::Error), None);
        assert_eq!(effect(CommandKind::Wipe, S::NotNow), None);
        for kind in CommandKind::ALL
            .into_iter()
            .filter(|k| *k != CommandKind::Wipe)
        {
            assert_eq!(effect(kind, S::Acknowledged), None, "{kind}");
        }
    }

    #[test]
    fn every_kind_reads_back_as_itself_and_an_unknown_kind_is_refused() {
        for kind in CommandKind::ALL {
            assert_eq!(CommandKind::parse(kind.as_str()), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("json"),
                serde_json::json!(kind.as_str())
            );
        }
        assert!(CommandKind::parse("reboot").is_err());
        assert!(CommandKind::parse("").is_err());
    }

    #[test]
    fn not_now_puts_the_command_off_with_growing_delays() {
        assert_eq!(
            decide_result(
                CommandKind::Lock,
                CommandState::Sent,
                1,
                CommandStatus::NotNow,
                now()
            ),
            Ok(ResultDecision::Record {
                state: CommandState::NotNow,
                retry_at: Some(now() + Duration::minutes(5)),
                effect: None,
            })
        );
        assert_eq!(not_now_delay(2), Duration::minutes(10));
        assert_eq!(not_now_delay(4), Duration::minutes(40));
        assert_eq!(not_now_delay(50), Duration::minutes(60));
    }

    #[test]
    fn states_round_trip_and_pending_ones_are_known() {
        for s in ALL_STATES {
            assert_eq!(CommandState::parse(s.as_str()), Ok(s));
        }
        assert!(CommandState::parse("done").is_err());
        assert!(CommandState::NotNow.is_pending());
        assert!(!CommandState::Expired.is_pending());
        assert!(CommandState::Queued.is_cancellable());
        assert!(!CommandState::Sent.is_cancellable());
    }

    #[test]
    fn device_error_text_is_trimmed_and_bounded() {
        assert_eq!(error_text(Some("  ")), None);
        assert_eq!(
            error_text(Some(&"e".repeat(2000))).map(|t| t.len()),
            Some(1000)
        );
    }

    #[test]
    fn automatic_commands_are_checked_like_any_other_and_go_out_first() {
        let (wipe, payload) = automatic(CommandKind::Wipe, None, None).expect("wipe");
        assert_eq!(wipe.priority, 2);
        assert_eq!(payload, r#"{"kind":"wipe"}"#);
        let (lock, payload) = automatic(
            CommandKind::LostModeOn,
            Some("Hittad? Ring kommunen".into()),
            Some("+46812345678".into()),
        )
        .expect("lost mode");
        assert_eq!(lock.priority, 2);
        assert!(payload.contains("+46812345678"), "{payload}");
        assert!(automatic(CommandKind::InstallApp, None, None).is_err());
        assert!(automatic(CommandKind::LostModeOn, Some("x".repeat(201)), None).is_err());
    }
}
