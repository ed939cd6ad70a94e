//! Phones that have broken the policy for longer than the grace period: their provider's IT
//! contacts are told once per stretch of non-compliance, by e-mail through the outbox (so the
//! message is retried, dead-lettered and audited like every notice). Every node may look; the
//! store marks each phone once, whichever node gets there.

use chrono::{DateTime, Duration, Utc};

use super::messages::{compliance_key, to_it_contacts};
use super::FlowResult;
use crate::domain::audit::AuditEvent;
use crate::domain::maintenance::Language;
use crate::domain::notice_text::compliance_alert;
use crate::domain::role::Scope;
use crate::state::AppState;
use crate::store::compliance::ComplianceRecord;

/// Phones handled per query.
const BATCH: u32 = 500;

/// Judges `phone` on `facts` by the node's judge and records the assessment (a history entry
/// only when it changed).
pub async fn judge_and_record(
    state: &AppState,
    phone: crate::state::policy_board::Phone,
    facts: &agent_protocol::DeviceFacts,
    now: DateTime<Utc>,
) -> crate::store::StoreResult<bool> {
    let reasons = state.judge().reasons(phone, facts);
    let assessment = crate::domain::compliance::Assessment::of(&reasons);
    state
        .store
        .record_compliance(phone.device_id, &assessment, now)
        .await
}

/// Alerts the providers of every phone non-compliant for longer than the grace period.
pub async fn alert_overdue(state: &AppState, now: DateTime<Utc>) -> FlowResult<()> {
    let grace = Duration::hours(i64::from(state.config.compliance_grace_hours));
    loop {
        let overdue = state.store.overdue_compliance(now - grace, BATCH).await?;
        let done = overdue.len() < BATCH as usize;
        if overdue.is_empty() {
            return Ok(());
        }
        let language = state.language().await?;
        for record in overdue {
            alert(state, &record, language, now, "compliance.overdue").await?;
        }
        if done {
            return Ok(());
        }
    }
}

/// Tells the provider of the phone with this record that it is non-compliant (once per stretch
/// of non-compliance: the store marks it); `action` names the occasion in the audit trail.
pub async fn alert(
    state: &AppState,
    record: &ComplianceRecord,
    language: Language,
    now: DateTime<Utc>,
    action: &str,
) -> FlowResult<()> {
    let device = state
        .store
        .device(Scope::Everything, record.device_id)
        .await?;
    let reasons: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&record.reasons)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["message"].as_str().map(str::to_string))
        .collect();
    let text = compliance_alert(
        &device.serial,
        record.since,
        &reasons,
        &state.config.operator_name,
        state.config.time_zone,
        language,
    );
    let contacts = match device.provider_id {
        Some(p) => state.store.organisation(p).await?.it_contacts,
        None => Vec::new(),
    };
    let messages = to_it_contacts(&contacts, device.provider_id, &text, |to| {
        compliance_key(device.id, record.since, to)
    });
    let mut event = AuditEvent::unattended("compliance", action);
    event.org_id = device.provider_id;
    event.target_kind = Some("device".into());
    event.details = serde_json::json!({
        "since": record.since,
        "reasons": reasons,
        "recipients": messages.len(),
    })
    .to_string();
    state
        .store
        .alert_compliance(device.id, record.since, &messages, now, event)
        .await?;
    Ok(())
}
