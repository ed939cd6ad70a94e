//! The state of a server node that its front ends (API, device listener, console), flows and
//! jobs share: the store, the configuration, the clock, and what each node keeps in memory to
//! serve requests (check-in times waiting for their batch, the batched certificate lookups, and
//! the notice, policy and command boards). None of it imports the HTTP layer.

use chrono::{DateTime, FixedOffset, Utc};
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::account::{LoginThrottle, SessionPolicy};
use crate::store::Store;

pub mod checkin_times;
pub mod command_board;
pub mod device_lookups;
pub mod metrics;
pub mod notice_board;
pub mod policy_board;
pub mod profile_ledger;

/// What every front end, flow and job of a node can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub clock: Clock,
    /// Demo mode: no second factor at login. Never the default.
    pub demo: bool,
    pub operator_id: i64,
    pub throttle: LoginThrottle,
    pub sessions: SessionPolicy,
    pub metrics: Arc<metrics::Metrics>,
    /// The device CA.
    pub ca: Arc<::enrollment::DeviceCa>,
    /// The device listener's URL as phones reach it (put in enrollment tokens).
    pub device_url: String,
    /// Check-in times waiting to be written in the next batch.
    pub checkin_times: checkin_times::CheckinTimes,
    /// Device certificate checks, batched.
    pub device_lookups: Arc<device_lookups::DeviceLookups>,
    /// Maintenance and disruptions shown to phones at check-in.
    pub notice_board: notice_board::NoticeBoard,
    /// Wakes this node's notice workers when a change has written notices.
    pub notice_wake: Arc<tokio::sync::Notify>,
    /// Policy documents for phones, kept in memory.
    pub policy_board: policy_board::PolicyBoard,
    /// Which phones have commands waiting.
    pub command_board: command_board::CommandBoard,
    /// Which standard profile each iPhone has.
    pub profile_ledger: profile_ledger::ProfileLedger,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.store.backend_name())
            .field("demo", &self.demo)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The language of the operator's messages (its notice policy).
    pub async fn language(
        &self,
    ) -> crate::store::StoreResult<crate::domain::maintenance::Language> {
        Ok(self.notice_policy().await?.language)
    }

    /// The operator's notice policy, or the default (the first city's contract) if none was set.
    pub async fn notice_policy(
        &self,
    ) -> crate::store::StoreResult<crate::domain::maintenance::NoticePolicy> {
        Ok(self
            .store
            .notice_policy(self.operator_id)
            .await?
            .unwrap_or_default())
    }

    /// Judges phones' compliance against the policy board, as of today.
    pub fn judge(&self) -> policy_board::Judge {
        self.policy_board.judge(
            self.clock.today(self.config.time_zone),
            self.config.supported_generations_back,
            self.config.operator_name.as_str().into(),
        )
    }

    /// Reads the policy layers, catalogue and models again after this node changed them.
    pub async fn refresh_policy_board(&self) {
        if let Err(e) = self.policy_board.refresh(self.store.as_ref()).await {
            tracing::warn!(error = %e, "could not refresh the policy board");
        }
    }

    /// When phones asked for at `at` are due: the configured number of working days, counted
    /// from the next opening of support when `at` is after closing.
    pub fn phone_request_due(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        crate::domain::phone_request::due_at(
            at,
            self.config.leasing.configuration_working_days,
            &self.config.leasing.support_hours(),
            self.config.time_zone,
        )
    }

    /// A stored UTC time as the operator's people read it.
    pub fn local(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        t.with_timezone(&self.config.time_zone).fixed_offset()
    }
}
