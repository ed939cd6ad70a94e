//! The service desk is reminded, once each, of warranties ending within 60 days, leases
//! ending within 30, and the MDM push certificate 30 and 7 days before it runs out, by e-mail
//! through the outbox.

use chrono::{DateTime, Duration, Utc};

use super::messages::{
    lease_reminder_key, push_certificate_reminder_key, to_service_desk, warranty_reminder_key,
};
use super::FlowResult;
use crate::domain::notice_text::{push_certificate_reminder, reminder, Reminder};
use crate::domain::role::Scope;
use crate::state::AppState;
use crate::store::leasing::LeaseFilter;

/// How far ahead the service desk is reminded of ending warranties and leases.
const WARRANTY_AHEAD: Duration = Duration::days(60);
const LEASE_AHEAD: Duration = Duration::days(30);
/// The days before the push certificate runs out on which the service desk is reminded.
const PUSH_CERTIFICATE_STEPS: [i64; 2] = [7, 30];
/// The most reminders of each kind per look.
const REMINDERS: u32 = 5000;

/// Reminds the service desk, once each, of warranties ending within 60 days, leases ending
/// within 30, and the push certificate running out within 30 days and again within 7.
pub async fn remind(state: &AppState, now: DateTime<Utc>) -> FlowResult<()> {
    if state.config.leasing.service_desk_email.is_none() {
        return Ok(());
    }
    let today = now.with_timezone(&state.config.time_zone).date_naive();
    let language = state.language().await?;
    let message = |what, serial: &str, date, key: String| {
        to_service_desk(&state.config, reminder(what, serial, date, language), key)
    };
    let mut items = Vec::new();
    for w in state
        .store
        .warranties_ending(today, today + WARRANTY_AHEAD, REMINDERS)
        .await?
    {
        let key = warranty_reminder_key(w.device_id, w.warranty_end);
        items.extend(
            message(Reminder::WarrantyEnds, &w.serial, w.warranty_end, key)
                .map(|m| (Some(w.device_id), m)),
        );
    }
    let leases = state
        .store
        .list_leases(
            Scope::Everything,
            &LeaseFilter {
                ending_by: Some(today + LEASE_AHEAD),
                limit: REMINDERS,
                ..LeaseFilter::default()
            },
        )
        .await?;
    for l in leases {
        let Some(end) = l.ends_on else { continue };
        let key = lease_reminder_key(l.id, end);
        items.extend(
            message(Reminder::LeaseEnds, &l.serial, end, key).map(|m| (Some(l.device_id), m)),
        );
    }
    // The nearest step only: a server started 5 days before sends the 7-day reminder alone.
    if let Ok(Some(push)) = state.ca.push_certificate() {
        let ends = DateTime::from_timestamp(push.not_after.unix_timestamp(), 0).unwrap_or(now);
        let left = (ends - now).num_days();
        if let Some(step) = PUSH_CERTIFICATE_STEPS.iter().find(|s| left < **s) {
            let date = ends.with_timezone(&state.config.time_zone).date_naive();
            let key = push_certificate_reminder_key(&push.topic, date, *step);
            let text = push_certificate_reminder(&push.topic, date, language);
            items.extend(to_service_desk(&state.config, text, key).map(|m| (None, m)));
        }
    }
    Ok(state.store.queue_reminders(&items, now).await?)
}
