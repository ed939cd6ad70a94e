//! Lost and stolen phones: a report marks the phone lost, queues a lost-mode lock at top
//! priority, asks for the SIM's block and tells the service desk; the phone's check-ins are
//! noted on the case; the case ends with the phone found (lost mode off, SIM re-activated) or
//! written off (identity revoked, phone retired, lease ended, replacement requested). The rules
//! are in `domain::lost_case`.

use agent_protocol::DeviceFacts;
use chrono::{DateTime, Utc};
use std::net::SocketAddr;

use super::messages::{loss_report_key, to_service_desk};
use super::FlowResult;
use crate::domain::audit::AuditEvent;
use crate::domain::command::CommandKind;
use crate::domain::device::DeviceStatus;
use crate::domain::lost_case::{LossKind, LossReport};
use crate::domain::notice_text::{loss_report, lost_mode_message, LossFacts};
use crate::domain::role::Scope;
use crate::state::AppState;
use crate::store::commands::CommandTemplate;
use crate::store::leasing::NewPhoneRequest;
use crate::store::lost_cases::{CaseEnd, LostCase, NewLostCase};
use crate::store::{Device, DeviceSession};

/// How often a lost phone's check-ins are noted on its case's timeline.
const CHECKIN_NOTE_EVERY: chrono::Duration = chrono::Duration::minutes(15);

/// Opens a case for `device`, reported by the account `by` (the caller has been allowed to).
pub async fn report(
    state: &AppState,
    device: &Device,
    report: LossReport,
    by: i64,
    event: AuditEvent,
) -> FlowResult<LostCase> {
    let now = state.clock.now();
    report.check(now)?;
    let language = state.language().await?;
    let lock = CommandTemplate::automatic(
        CommandKind::LostModeOn,
        Some(lost_mode_message(&state.config.operator_name, language)),
        state.config.leasing.support_phone_number.clone(),
        now,
        Some(by),
    )?;
    let provider_name = match device.provider_id {
        Some(p) => state.store.organisation(p).await?.name,
        None => state.config.operator_name.clone(),
    };
    let (sim, _) = state.store.sim_on_file(device.id).await?;
    let facts = LossFacts {
        serial: &device.serial,
        provider: &provider_name,
        stolen: report.kind == LossKind::Stolen,
        discovered_at: report.discovered_at,
        late: report.is_late(now),
        sim: sim.as_ref().map(|s| s.iccid.as_str()),
    };
    let notify = to_service_desk(
        &state.config,
        loss_report(&facts, state.config.time_zone, language),
        loss_report_key(&device.serial, report.discovered_at),
    )
    .into_iter()
    .collect();
    let case = state
        .store
        .report_loss(
            &NewLostCase {
                device_id: device.id,
                report,
                reported_by: Some(by),
                lock,
                notify,
            },
            now,
            event,
        )
        .await?;
    state.command_board.mark(device.id);
    state.notice_wake.notify_one();
    Ok(case)
}

/// The phone of case `id` is found: lost mode is turned off, the SIM's re-activation
/// requested, and the phone goes back to the status it had.
pub async fn found(state: &AppState, id: i64, by: i64, event: AuditEvent) -> FlowResult<LostCase> {
    let now = state.clock.now();
    let unlock = CommandTemplate::automatic(CommandKind::LostModeOff, None, None, now, Some(by))?;
    let case = state
        .store
        .resolve_lost_case(id, &CaseEnd::Found { unlock }, Some(by), now, event)
        .await?;
    state.command_board.mark(case.device_id);
    Ok(case)
}

/// The phone of `case` is written off: its identity is revoked, it is retired, its lease ends,
/// and a replacement request is opened for the provider, which carries the lease's terms and
/// holder over to the phone that fulfils it.
pub async fn write_off(
    state: &AppState,
    case: &LostCase,
    by: i64,
    event: AuditEvent,
) -> FlowResult<LostCase> {
    let device = state
        .store
        .device(Scope::Everything, case.device_id)
        .await?;
    let now = state.clock.now();
    let replacement = NewPhoneRequest {
        provider_id: case.provider_id.unwrap_or_default(),
        quantity: 1,
        model_id: Some(device.model_id),
        needed_by: None,
        delivery_note: format!("Ersätter {} (förlustärende {})", device.serial, case.id),
        due_at: state.phone_request_due(now),
        created_by: Some(by),
    };
    Ok(state
        .store
        .resolve_lost_case(
            case.id,
            &CaseEnd::WrittenOff { replacement },
            Some(by),
            now,
            event,
        )
        .await?)
}

/// Lost cases handled per query.
const ESCALATE_BATCH: u32 = 200;

/// Queues the wipe of every lost phone not found within the configured time.
pub async fn escalate_overdue(state: &AppState, now: DateTime<Utc>) -> FlowResult<()> {
    let Some(after) = state.config.leasing.lost_wipe_after() else {
        return Ok(());
    };
    loop {
        let due = state
            .store
            .lost_cases_to_escalate(now - after, ESCALATE_BATCH)
            .await?;
        let done = due.len() < ESCALATE_BATCH as usize;
        for case in due {
            let mut event = AuditEvent::unattended("leasing", "lost_case.escalate");
            event.org_id = case.provider_id;
            event.target_kind = Some("lost_case".into());
            if state
                .store
                .escalate_lost_case(
                    case.id,
                    &CommandTemplate::automatic(CommandKind::Wipe, None, None, now, None)?,
                    now,
                    event,
                )
                .await?
                .is_some()
            {
                state.command_board.mark(case.device_id);
            }
        }
        if done {
            return Ok(());
        }
    }
}

/// A lost phone that checks in is noted on its case's timeline: the time and the network facts
/// (address, SIM, phone number), nothing about where it is.
pub async fn on_checkin(
    state: &AppState,
    session: &DeviceSession,
    peer: SocketAddr,
    facts: &DeviceFacts,
    now: DateTime<Utc>,
) -> FlowResult<()> {
    if session.status != DeviceStatus::Lost {
        return Ok(());
    }
    let details = serde_json::json!({
        "address": peer.ip().to_string(),
        "iccid": facts.iccid,
        "phone_number": facts.phone_number,
    });
    state
        .store
        .note_lost_checkin(session.device_id, &details, CHECKIN_NOTE_EVERY, now)
        .await?;
    Ok(())
}
