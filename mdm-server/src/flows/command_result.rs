//! A phone answers a command it was sent. Answers are idempotent by command id: the same answer
//! again is accepted and changes nothing; what an answer does (a wipe's acknowledgement ends
//! the phone's identity, say) is decided in `domain::command` and done in the same transaction.

use agent_protocol::CommandResult;
use std::net::IpAddr;

use super::{device_event, FlowError, FlowResult, RejectionClass};
use crate::domain::audit::Outcome;
use crate::domain::command::ResultRefusal;
use crate::state::AppState;
use crate::store::commands::{AnswerOutcome, CommandRecord};
use crate::store::{DeviceSession, StoreError};

/// Records the phone's answer to command `id`; returns the command as it now stands.
pub async fn record(
    state: &AppState,
    device: &DeviceSession,
    source: IpAddr,
    id: i64,
    answer: &CommandResult,
) -> FlowResult<CommandRecord> {
    let now = state.clock.now();
    let event = device_event(
        Some(device.device_id),
        device.provider_id,
        source,
        "device.command_result",
        Outcome::Success,
        serde_json::json!({
            "command_id": id,
            "status": answer.status,
            "error": crate::domain::command::error_text(answer.error.as_deref()),
        }),
    );
    let refused = |kind: &'static str, title: &'static str, detail: String| {
        FlowError::rejected(RejectionClass::Conflict, kind, title, detail)
    };
    let outcome = match state
        .store
        .record_answer(
            device.device_id,
            id,
            answer.status,
            answer.error.as_deref(),
            now,
            event,
        )
        .await
    {
        Err(StoreError::NotFound) => {
            return Err(FlowError::rejected(
                RejectionClass::NotFound,
                "command-unknown",
                "No such command for this phone",
                format!("this phone was never sent command {id}"),
            ))
        }
        other => other?,
    };
    match outcome {
        AnswerOutcome::Recorded(c) | AnswerOutcome::Repeat(c) => Ok(c),
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
