//! A phone checks in: its facts are checked against its record and stored when they changed,
//! its SIM and (when lost) its case hear of it, its compliance is judged when the facts or the
//! policy changed, and it is answered with its notices, its policy when it has another, and the
//! commands waiting for it. Check-ins are the busiest requests: a check-in that changes nothing
//! writes only its time, in the next batch.

use agent_protocol::{CheckinRequest, CheckinResponse, CommandAction, DeviceCommand, DeviceFacts};
use chrono::{DateTime, Utc};
use std::net::SocketAddr;

use super::enrollment::{check_reported_facts, contradicts};
use super::{device_event, FlowError, FlowResult};
use crate::domain::audit::Outcome;
use crate::domain::facts::{canonical, canonical_hash, contradiction};
use crate::state::AppState;
use crate::store::{DeviceSession, ReportedFacts};

/// Records a check-in of the phone `device` (its certificate is live) from `peer`, and answers it.
pub async fn check_in(
    state: &AppState,
    device: &DeviceSession,
    peer: SocketAddr,
    mut req: CheckinRequest,
) -> FlowResult<CheckinResponse> {
    let now = state.clock.now();
    if req.report_id.is_empty() || req.report_id.len() > 64 {
        return Err(FlowError::invalid(
            "report_id",
            "must be 1 to 64 characters",
        ));
    }
    let policy = state
        .policy_board
        .document(device.platform, device.provider_id, device.device_id)
        .filter(|doc| req.policy_hash.as_deref() != Some(doc.hash.as_str()))
        .map(|doc| agent_protocol::PolicyUpdate {
            hash: doc.hash.clone(),
            document: doc.json.clone(),
        });
    take_facts(state, device, peer, &mut req.facts, policy.is_some(), now).await?;
    let commands = next_commands(state, device.device_id, now).await?;
    Ok(CheckinResponse {
        acknowledged: req.report_id,
        next_checkin_seconds: state.config.checkin_interval_seconds,
        server_time: now,
        notices: state.notice_board.for_provider(device.provider_id, now),
        policy,
        commands,
    })
}

/// What a phone reports about itself, whichever way it reached us (an agent's check-in, an
/// iPhone's answer to an inventory query): checked against its record (a contradiction is
/// refused and audited), stored when it changed, with what its SIM and a lost case make of it,
/// and its compliance judged when the facts or (`policy_changed`) its policy changed. Unchanged
/// facts write only the check-in time, in the next batch.
pub async fn take_facts(
    state: &AppState,
    device: &DeviceSession,
    peer: SocketAddr,
    facts: &mut DeviceFacts,
    policy_changed: bool,
    now: DateTime<Utc>,
) -> FlowResult<()> {
    check_reported_facts(facts)?;
    if let Some(reason) = contradiction(&device.serial, &device.imei, device.platform, facts) {
        let event = device_event(
            Some(device.device_id),
            device.provider_id,
            peer.ip(),
            "device.checkin",
            Outcome::Denied,
            serde_json::json!({ "reason": reason }),
        );
        state.store.append_audit(event, now).await?;
        return Err(contradicts(reason));
    }
    let hash = canonical_hash(facts);
    let facts_changed = device.facts_hash.as_deref() != Some(hash.as_str());
    if !facts_changed {
        state.checkin_times.note(device.device_id, now);
    } else {
        let (json, hash) = canonical(facts);
        let stored = ReportedFacts { json, hash };
        state
            .store
            .record_checkin(device.device_id, Some(&stored), now)
            .await?;
        super::sim_report::on_checkin(state, device, facts, now).await?;
    }
    super::loss::on_checkin(state, device, peer, facts, now).await?;
    // Compliance can only change with new facts or a new policy; most check-ins bring neither.
    if facts_changed || policy_changed {
        let phone = crate::state::policy_board::Phone {
            device_id: device.device_id,
            platform: device.platform,
            provider_id: device.provider_id,
            model_id: device.model_id,
            // It presented a live certificate, or it would not have got this far.
            certificate_valid: true,
        };
        if let Err(e) = super::compliance::judge_and_record(state, phone, facts, now).await {
            tracing::warn!(device = device.device_id, error = %e, "compliance not recorded");
        }
    }
    Ok(())
}

/// The phone's next commands, marked sent.
async fn next_commands(
    state: &AppState,
    device_id: i64,
    now: DateTime<Utc>,
) -> FlowResult<Vec<DeviceCommand>> {
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
