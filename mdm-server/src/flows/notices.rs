//! What the providers' IT contacts are told about maintenance and disruptions: the occurrences
//! of recurring windows are created when their announcement is due, and each due notice is
//! expanded into one outbox message per IT contact and channel (and the webhook), with the next
//! follow-up of an open disruption. The notice workers in `jobs::notices` run these and send
//! what the outbox holds.

use chrono::{DateTime, Duration, Utc};

use super::maintenance::owed_notices;
use super::messages::notice_key;
use super::{FlowError, FlowResult};
use crate::domain::maintenance::{Channel, NoticeKind, NoticePolicy, Recurrence, WindowKind};
use crate::domain::notice_text::{self, NoticeSubject};
use crate::domain::outbox::is_late;
use crate::state::AppState;
use crate::store::notices::{NewDelivery, NewNotice, NewWindow, Notice, Series, Window};
use crate::store::Organisation;

/// Notices expanded per round.
const EXPAND_BATCH: u32 = 50;

/// Creates the occurrences of recurring windows whose announcement is due.
pub async fn announce_occurrences(state: &AppState, policy: &NoticePolicy) -> FlowResult<()> {
    let tz = state.config.time_zone;
    let now = state.clock.now();
    let until = policy.earliest_start(tz, now);
    for series in state.store.due_series(until).await? {
        if let Err(e) = announce_occurrence(state, policy, tz, &series, now).await {
            tracing::warn!(series = series.id, error = %e, "could not announce an occurrence");
        }
    }
    Ok(())
}

async fn announce_occurrence(
    state: &AppState,
    policy: &NoticePolicy,
    tz: chrono_tz::Tz,
    series: &Series,
    now: DateTime<Utc>,
) -> FlowResult<()> {
    let Some(next) = series.next_start_at else {
        return Ok(());
    };
    let recurrence = Recurrence::parse(&series.cron, series.duration_minutes)?;
    let (start, end) = recurrence
        .next_after(tz, next)
        .ok_or_else(|| FlowError::invalid("cron", "the expression no longer fires"))?;
    let following = recurrence
        .next_after(tz, start + Duration::seconds(1))
        .map(|(s, _)| s);
    // Announced when it was due (`start` less the lead time); after downtime that lies in
    // the past and the notice goes out at once, marked late.
    let announce_at = policy.announce_at(tz, start);
    let notices = owed_notices(policy, (NoticeKind::Announced, announce_at), start, end);
    let window = NewWindow {
        kind: WindowKind::Planned,
        series_id: Some(series.id),
        text: series.text.clone(),
        targets: series.targets.clone(),
        starts_at: start,
        ends_at: Some(end),
        outside_preferred: series.outside_preferred,
        created_by: None,
    };
    // An occurrence that ended while every node was down is passed over.
    let window = Some(&window).filter(|_| end > now);
    state
        .store
        .materialise_occurrence(series.id, next, window, &notices, following, now)
        .await?;
    Ok(())
}

pub async fn expand_due(state: &AppState, policy: &NoticePolicy, webhook: bool) -> FlowResult<()> {
    let now = state.clock.now();
    let due = state.store.due_notices(now, EXPAND_BATCH).await?;
    if due.is_empty() {
        return Ok(());
    }
    let providers = state.store.list_providers().await?;
    for notice in &due {
        let window = state.store.window(notice.window_id).await?;
        let deliveries = deliveries_for(state, policy, notice, &window, &providers, webhook);
        let then = follow_up(policy, notice, &window, now);
        state
            .store
            .expand_notice(
                notice.id,
                &deliveries,
                &then,
                is_late(notice.due_at, now),
                now,
            )
            .await?;
    }
    Ok(())
}

/// One outbox row per IT contact and channel of every provider the window concerns (whose
/// contract is in force), and one for the webhook.
fn deliveries_for(
    state: &AppState,
    policy: &NoticePolicy,
    notice: &Notice,
    window: &Window,
    providers: &[Organisation],
    webhook: bool,
) -> Vec<NewDelivery> {
    let tz = state.config.time_zone;
    let today = state.clock.today(tz);
    let subject = NoticeSubject {
        operator_name: &state.config.operator_name,
        kind: window.kind,
        title: &window.text.title,
        description: &window.text.description,
        systems: &window.text.systems,
        starts_at: window.starts_at,
        ends_at: window.ends_at,
        message: notice.message.as_deref(),
    };
    let text = notice_text::render(notice.kind, &subject, tz, policy.language);
    let channels = policy.channels_for(window.kind);
    let mut out = Vec::new();
    for provider in providers.iter().filter(|p| {
        window.targets.includes(p.id) && p.contract.is_some_and(|c| c.is_active_on(today))
    }) {
        for contact in &provider.it_contacts {
            for &channel in &channels {
                let (recipient, subject, body) = match channel {
                    Channel::Email => (
                        contact.email.as_str(),
                        text.subject.clone(),
                        text.body.clone(),
                    ),
                    Channel::Sms => (contact.mobile.as_str(), String::new(), text.sms.clone()),
                    Channel::Webhook => continue,
                };
                out.push(NewDelivery {
                    channel,
                    recipient: recipient.to_string(),
                    provider_id: Some(provider.id),
                    subject,
                    body,
                    idempotency_key: notice_key(notice.id, channel, recipient),
                });
            }
        }
    }
    if channels.contains(&Channel::Webhook) && webhook {
        let recipient = crate::notify::webhook::RECIPIENT;
        let body = serde_json::json!({
            "notice_id": notice.id,
            "notice": notice.kind,
            "window": {
                "id": window.id,
                "kind": window.kind,
                "title": window.text.title,
                "systems": window.text.systems,
                "starts_at": window.starts_at,
                "ends_at": window.ends_at,
            },
            "subject": text.subject,
            "text": text.body,
        });
        out.push(NewDelivery {
            channel: Channel::Webhook,
            recipient: recipient.to_string(),
            provider_id: None,
            subject: text.subject.clone(),
            body: body.to_string(),
            idempotency_key: notice_key(notice.id, Channel::Webhook, recipient),
        });
    }
    out
}

/// The next follow-up of an open disruption, when this notice is one.
fn follow_up(
    policy: &NoticePolicy,
    notice: &Notice,
    window: &Window,
    now: DateTime<Utc>,
) -> Vec<NewNotice> {
    if notice.kind != NoticeKind::DisruptionFollowUp || window.closed_at.is_some() {
        return Vec::new();
    }
    let every = Duration::minutes(i64::from(policy.disruption_follow_up_minutes));
    // After downtime the next one is counted from now, not from the missed one.
    let next = (notice.due_at + every).max(now + every);
    vec![NewNotice::at(NoticeKind::DisruptionFollowUp, next)]
}
