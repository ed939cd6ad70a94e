//! What a phone's check-in says about its SIM, judged by `domain::subscription::judge_report`:
//! another card than recorded is flagged for the operator, and 80 % and 100 % of the month's
//! data are reported to the provider's IT contacts once per month. Writes only when something
//! changed, so ordinary check-ins cost nothing here.

use agent_protocol::DeviceFacts;
use chrono::{DateTime, Utc};

use super::messages::{data_use_key, to_it_contacts};
use super::FlowResult;
use crate::domain::subscription::{judge_report, SimOnRecord};
use crate::state::AppState;
use crate::store::subscriptions::SimReport;
use crate::store::DeviceSession;

pub async fn on_checkin(
    state: &AppState,
    session: &DeviceSession,
    facts: &DeviceFacts,
    now: DateTime<Utc>,
) -> FlowResult<()> {
    let (sim, flagged) = state.store.sim_on_file(session.device_id).await?;
    let month = now
        .with_timezone(&state.config.time_zone)
        .format("%Y-%m")
        .to_string();
    let record = sim.as_ref().map(|s| SimOnRecord {
        iccid: &s.iccid,
        data_gb: u32::try_from(s.data_gb).unwrap_or(u32::MAX),
        alerted: s.alert_month.as_deref().map(|m| {
            (
                m,
                s.alert_percent
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(0),
            )
        }),
    });
    let findings = judge_report(
        record,
        flagged.as_deref(),
        facts.iccid.as_deref(),
        facts.mobile_data_bytes_this_month,
        &month,
    );
    if findings.is_empty() {
        return Ok(());
    }
    let data_alert = match (findings.data_alert, &sim) {
        (Some(percent), Some(sim)) => {
            let language = state.language().await?;
            let text = crate::domain::notice_text::data_use_alert(
                &session.serial,
                &sim.phone_number,
                percent,
                u32::try_from(sim.data_gb).unwrap_or(u32::MAX),
                &state.config.operator_name,
                language,
            );
            let contacts = match session.provider_id {
                Some(p) => state.store.organisation(p).await?.it_contacts,
                None => Vec::new(),
            };
            let messages = to_it_contacts(&contacts, session.provider_id, &text, |to| {
                data_use_key(&sim.iccid, &month, percent, to)
            });
            Some((month.clone(), percent, messages))
        }
        _ => None,
    };
    let report = SimReport {
        device_id: session.device_id,
        mismatch: findings.mismatch,
        data_alert,
    };
    state.store.record_sim_report(&report, now).await?;
    if report.data_alert.is_some() {
        state.notice_wake.notify_one();
    }
    Ok(())
}
