//! Tells a provider's IT contacts about their phones that have broken the policy for longer than
//! the grace period, once per stretch of non-compliance, by e-mail through the outbox (so the
//! message is retried, dead-lettered and audited like every notice). Every node may look; the
//! store marks each phone once, whichever node gets there.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use tokio::sync::watch;

use super::{repeat, ClockGate};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::audit::AuditEvent;
use crate::domain::maintenance::{Channel, Language};
use crate::domain::notice_text::compliance_alert;
use crate::domain::role::Scope;
use crate::store::compliance::ComplianceRecord;
use crate::store::notices::NewDelivery;
use crate::store::{Store, StoreResult};

/// How often (on the server's clock) a node looks for overdue phones.
const LOOK_EVERY: Duration = Duration::minutes(10);
/// How often a node reads its clock.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// Phones handled per look.
const BATCH: u32 = 500;

pub struct ComplianceWatch {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Clock,
    operator_id: i64,
    gate: ClockGate,
}

impl std::fmt::Debug for ComplianceWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComplianceWatch")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl ComplianceWatch {
    pub fn new(state: &crate::http::AppState) -> Self {
        ComplianceWatch {
            store: state.store.clone(),
            config: state.config.clone(),
            clock: state.clock.clone(),
            operator_id: state.operator_id,
            gate: ClockGate::new(LOOK_EVERY),
        }
    }

    pub async fn run(self, stop: watch::Receiver<bool>) {
        repeat(TICK, stop, "compliance alerts", || async {
            let now = self.clock.now();
            if self.gate.due(now) {
                self.look(now).await?;
                self.gate.done(now);
            }
            Ok(())
        })
        .await;
    }

    /// Alerts the providers of every phone non-compliant for longer than the grace period.
    pub async fn look(&self, now: DateTime<Utc>) -> StoreResult<()> {
        let grace = Duration::hours(i64::from(self.config.compliance_grace_hours));
        loop {
            let overdue = self.store.overdue_compliance(now - grace, BATCH).await?;
            let done = overdue.len() < BATCH as usize;
            if overdue.is_empty() {
                return Ok(());
            }
            let language = crate::jobs::notices::policy(self.store.as_ref(), self.operator_id)
                .await?
                .language;
            for record in overdue {
                self.alert(&record, language, now).await?;
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn alert(
        &self,
        record: &ComplianceRecord,
        language: Language,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let device = self
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
            &self.config.operator_name,
            self.config.time_zone,
            language,
        );
        let contacts = match device.provider_id {
            Some(p) => self.store.organisation(p).await?.it_contacts,
            None => Vec::new(),
        };
        let messages: Vec<NewDelivery> = contacts
            .iter()
            .map(|c| NewDelivery {
                channel: Channel::Email,
                recipient: c.email.as_str().to_string(),
                provider_id: device.provider_id,
                subject: text.subject.clone(),
                body: text.body.clone(),
                idempotency_key: format!(
                    "compliance-{}-{}-{}",
                    device.id,
                    record.since.timestamp_micros(),
                    c.email.as_str()
                ),
            })
            .collect();
        let mut event = AuditEvent::unattended("compliance", "compliance.overdue");
        event.org_id = device.provider_id;
        event.target_kind = Some("device".into());
        event.details = serde_json::json!({
            "since": record.since,
            "reasons": reasons,
            "recipients": messages.len(),
        })
        .to_string();
        self.store
            .alert_compliance(device.id, record.since, &messages, now, event)
            .await?;
        Ok(())
    }
}
