//! Every message the outbox sends: who gets it, and the
//! idempotency key that names it, so that a message worked out twice (by two nodes, or by one
//! after a restart) is queued once and a receiver can drop a repeat. The texts are in
//! `domain::notice_text`; maintenance notices are expanded in `flows::notices`.

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::Config;
use crate::domain::contact::ItContact;
use crate::domain::maintenance::Channel;
use crate::domain::notice_text::NoticeText;
use crate::store::notices::NewDelivery;

/// One e-mail to each of a provider's IT contacts; `key` names the message for one recipient.
pub fn to_it_contacts(
    contacts: &[ItContact],
    provider_id: Option<i64>,
    text: &NoticeText,
    key: impl Fn(&str) -> String,
) -> Vec<NewDelivery> {
    contacts
        .iter()
        .map(|c| NewDelivery {
            channel: Channel::Email,
            recipient: c.email.as_str().to_string(),
            provider_id,
            subject: text.subject.clone(),
            body: text.body.clone(),
            idempotency_key: key(c.email.as_str()),
        })
        .collect()
}

/// An e-mail to the service desk, when its address is configured.
pub fn to_service_desk(config: &Config, text: NoticeText, key: String) -> Option<NewDelivery> {
    let to = config.leasing.service_desk_email.as_ref()?;
    Some(NewDelivery {
        channel: Channel::Email,
        recipient: to.clone(),
        provider_id: None,
        subject: text.subject,
        body: text.body,
        idempotency_key: key,
    })
}

/// A notice to one IT contact (or the webhook) on one channel: unique per notice, channel and
/// recipient, and short enough for a Message-ID.
pub fn notice_key(notice_id: i64, channel: Channel, recipient: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(recipient.as_bytes());
    format!(
        "notice-{notice_id}-{}-{}",
        channel.as_str(),
        hex::encode(&digest[..8])
    )
}

/// The service desk's e-mail about a loss report: one per phone and discovery.
pub fn loss_report_key(serial: &str, discovered_at: DateTime<Utc>) -> String {
    format!("lost-case-{serial}-{}", discovered_at.timestamp_micros())
}

/// A data-use alert: once per SIM, month, threshold and IT contact.
pub fn data_use_key(iccid: &str, month: &str, percent: u32, recipient: &str) -> String {
    format!("data-use-{iccid}-{month}-{percent}-{recipient}")
}

/// A compliance alert: once per phone, time it fell out of compliance, and IT contact.
pub fn compliance_key(device_id: i64, since: DateTime<Utc>, recipient: &str) -> String {
    format!(
        "compliance-{device_id}-{}-{recipient}",
        since.timestamp_micros()
    )
}

/// A reminder of a warranty ending: once per phone and end date.
pub fn warranty_reminder_key(device_id: i64, warranty_end: NaiveDate) -> String {
    format!("reminder-warranty-{device_id}-{warranty_end}")
}

/// A reminder that the MDM push certificate runs out: once per certificate and step (30 or
/// 7 days before).
pub fn push_certificate_reminder_key(topic: &str, not_after: NaiveDate, days: i64) -> String {
    format!("reminder-push-certificate-{topic}-{not_after}-{days}")
}

/// A reminder of a lease ending: once per lease and end date.
pub fn lease_reminder_key(lease_id: i64, ends_on: NaiveDate) -> String {
    format!("reminder-lease-{lease_id}-{ends_on}")
}
