//! Which standard profile each iPhone has, as far as this node knows, so that an iPhone's
//! `Idle` learns without reading or writing the database whether it must be sent the profile
//! of its policy as it stands. A phone the node has not seen since it started is looked up
//! once (its last `ProfileList` answer, in its facts); a profile sent is not sent again for
//! [`RESEND_AFTER`] unless the phone says it installed another.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a profile that was sent and not acknowledged waits before it is sent again.
pub const RESEND_AFTER: chrono::Duration = chrono::Duration::hours(1);

#[derive(Debug, Clone, Default)]
struct Entry {
    /// The `PayloadUUID` the phone has installed, `None` when it has none of ours.
    installed: Option<String>,
    /// The last profile sent, and when.
    sent: Option<(String, DateTime<Utc>)>,
}

/// What the ledger says of a phone and the profile it should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It has it, or it was sent it a moment ago.
    Settled,
    /// It has another (or none): send it.
    Due,
    /// This node does not know: look it up and [`ProfileLedger::learn`] it.
    Unknown,
}

#[derive(Debug, Clone, Default)]
pub struct ProfileLedger {
    phones: Arc<Mutex<HashMap<i64, Entry>>>,
}

impl ProfileLedger {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Entry>> {
        self.phones.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn standing(&self, device_id: i64, wanted: &str, now: DateTime<Utc>) -> Standing {
        let phones = self.lock();
        let Some(entry) = phones.get(&device_id) else {
            return Standing::Unknown;
        };
        if entry.installed.as_deref() == Some(wanted) {
            return Standing::Settled;
        }
        match &entry.sent {
            Some((uuid, at)) if uuid == wanted && now - *at < RESEND_AFTER => Standing::Settled,
            _ => Standing::Due,
        }
    }

    /// The phone has `installed` (from its facts, a `ProfileList` answer or an acknowledged
    /// installation). A profile sent and now installed is no longer waited for: should the
    /// phone lose it, it is sent again at once.
    pub fn learn(&self, device_id: i64, installed: Option<String>) {
        let mut phones = self.lock();
        let entry = phones.entry(device_id).or_default();
        if entry.sent.as_ref().map(|(uuid, _)| uuid) == installed.as_ref() {
            entry.sent = None;
        }
        entry.installed = installed;
    }

    /// The profile `uuid` was sent to the phone at `now`.
    pub fn sent(&self, device_id: i64, uuid: &str, now: DateTime<Utc>) {
        self.lock().entry(device_id).or_default().sent = Some((uuid.to_string(), now));
    }

    /// The phone enrolled again or was wiped: what it had is gone.
    pub fn forget(&self, device_id: i64) {
        self.lock().remove(&device_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_is_due_the_profile_it_lacks_once_per_hour_and_settled_once_it_has_it() {
        let ledger = ProfileLedger::default();
        let now = Utc::now();
        assert_eq!(ledger.standing(1, "B", now), Standing::Unknown);
        ledger.learn(1, Some("A".into()));
        assert_eq!(ledger.standing(1, "B", now), Standing::Due);
        ledger.sent(1, "B", now);
        assert_eq!(ledger.standing(1, "B", now), Standing::Settled);
        assert_eq!(
            ledger.standing(1, "B", now + RESEND_AFTER),
            Standing::Due,
            "not acknowledged in an hour: sent again"
        );
        assert_eq!(
            ledger.standing(1, "C", now),
            Standing::Due,
            "a newer policy"
        );
        ledger.learn(1, Some("B".into()));
        assert_eq!(
            ledger.standing(1, "B", now + RESEND_AFTER),
            Standing::Settled
        );
        ledger.learn(1, None);
        assert_eq!(
            ledger.standing(1, "B", now),
            Standing::Due,
            "it lost the profile it had installed: sent again at once"
        );
        ledger.forget(1);
        assert_eq!(ledger.standing(1, "B", now), Standing::Unknown);
    }
}
