//! What phones are shown at check-in: the maintenance windows and disruptions in progress or
//! starting soon. Check-ins are the busiest requests, so each node keeps the list in memory
//! and reads it again from the database every poll interval and after every change it makes.

use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, RwLock};

use crate::store::notices::{Window, WindowFilter};
use crate::store::{Store, StoreResult};

/// Windows starting within this time are shown on the phones.
pub const UPCOMING: Duration = Duration::days(14);
/// At most this many windows are shown.
const MAX_SHOWN: u32 = 500;

#[derive(Debug, Clone, Default)]
pub struct NoticeBoard {
    windows: Arc<RwLock<Vec<Window>>>,
}

impl NoticeBoard {
    pub async fn refresh(&self, store: &dyn Store, now: DateTime<Utc>) -> StoreResult<()> {
        let windows = store
            .list_windows(&WindowFilter {
                ending_after: Some(now),
                limit: MAX_SHOWN,
                ..Default::default()
            })
            .await?;
        let shown: Vec<Window> = windows
            .into_iter()
            .filter(|w| w.times().shown_to_devices(now, UPCOMING))
            .collect();
        *self.windows.write().unwrap_or_else(|p| p.into_inner()) = shown;
        Ok(())
    }

    /// The notices for a phone of `provider_id` at `now`, soonest first.
    pub fn for_provider(
        &self,
        provider_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Vec<agent_protocol::DeviceNotice> {
        let Some(provider_id) = provider_id else {
            return Vec::new();
        };
        let windows = self.windows.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<agent_protocol::DeviceNotice> = windows
            .iter()
            .filter(|w| {
                w.targets.includes(provider_id) && w.times().shown_to_devices(now, UPCOMING)
            })
            .map(|w| agent_protocol::DeviceNotice {
                id: w.id,
                kind: w.kind.as_str().to_string(),
                title: w.text.title.clone(),
                status: w.status_at(now).as_str().to_string(),
                starts_at: w.starts_at,
                ends_at: w.ends_at,
            })
            .collect();
        out.sort_by_key(|n| (n.starts_at, n.id));
        out
    }
}
