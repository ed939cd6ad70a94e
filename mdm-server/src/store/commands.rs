//! Storage of the command queue: per-device order by priority, delivery at check-in, the
//! phones' answers, expiry and pruning.

use agent_protocol::CommandStatus;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::audit::AuditEvent;
use crate::domain::command::{CommandKind, CommandState, ResultRefusal};
use crate::domain::role::Scope;

/// A command to queue for one phone.
#[derive(Debug, Clone)]
pub struct NewCommand {
    pub device_id: i64,
    pub kind: CommandKind,
    /// The command as the phone receives it (`agent_protocol::CommandAction`, JSON).
    pub payload: String,
    pub priority: i64,
    pub expires_at: DateTime<Utc>,
    pub created_by: Option<i64>,
}

/// A command the server queues on its own for phones it picks inside a transaction (the wipe
/// of a returned phone, the lock of a lost one).
#[derive(Debug, Clone)]
pub struct CommandTemplate {
    pub kind: CommandKind,
    pub payload: String,
    pub priority: i64,
    pub expires_at: DateTime<Utc>,
    pub created_by: Option<i64>,
}

impl CommandTemplate {
    /// A command the server queues on its own, checked by `domain::command::automatic`.
    pub fn automatic(
        kind: CommandKind,
        message: Option<String>,
        phone_number: Option<String>,
        now: DateTime<Utc>,
        created_by: Option<i64>,
    ) -> Result<Self, crate::domain::DomainError> {
        let (command, payload) = crate::domain::command::automatic(kind, message, phone_number)?;
        Ok(CommandTemplate {
            kind: command.kind,
            payload,
            priority: command.priority,
            expires_at: now + command.expires_in,
            created_by,
        })
    }

    pub fn for_device(&self, device_id: i64) -> NewCommand {
        NewCommand {
            device_id,
            kind: self.kind,
            payload: self.payload.clone(),
            priority: self.priority,
            expires_at: self.expires_at,
            created_by: self.created_by,
        }
    }
}

/// A command to queue for every enrolled phone of a provider. App commands carry one payload
/// per platform; a platform without one is skipped (the app does not exist there).
#[derive(Debug, Clone)]
pub struct NewFanOut {
    pub provider_id: i64,
    pub kind: CommandKind,
    pub android_payload: Option<String>,
    pub ios_payload: Option<String>,
    pub priority: i64,
    pub expires_at: DateTime<Utc>,
    pub created_by: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub id: i64,
    pub device_id: i64,
    pub provider_id: Option<i64>,
    pub batch_id: Option<i64>,
    pub kind: CommandKind,
    pub payload: String,
    pub priority: i64,
    pub state: CommandState,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub finished_at: Option<DateTime<Utc>>,
    /// The phone's error text, or why the command was cancelled.
    pub result: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CommandFilter {
    pub device_id: Option<i64>,
    pub batch_id: Option<i64>,
    pub state: Option<CommandState>,
    /// Only commands with an id below this (paging newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandBatch {
    pub id: i64,
    pub provider_id: i64,
    pub kind: CommandKind,
    pub queued: i64,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// How many of the batch's commands are in each state.
    pub states: Vec<(CommandState, i64)>,
}

/// What became of a phone's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// Stored; the command as it is now. A confirmed wipe has also revoked the phone's
    /// identity and purged its queue.
    Recorded(CommandRecord),
    /// The same answer was already stored.
    Repeat(CommandRecord),
    Refused(ResultRefusal),
}

#[async_trait]
pub trait CommandStore: Send + Sync {
    async fn queue_command(
        &self,
        command: &NewCommand,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<CommandRecord>;
    /// One statement queues the command for every enrolled phone of the provider that is not
    /// retired. Returns the batch.
    async fn queue_fan_out(
        &self,
        fan_out: &NewFanOut,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<CommandBatch>;
    /// A command, if its phone is within `scope`.
    async fn command(&self, scope: Scope, id: i64) -> StoreResult<CommandRecord>;
    /// Newest first, within `scope`.
    async fn list_commands(
        &self,
        scope: Scope,
        filter: &CommandFilter,
    ) -> StoreResult<Vec<CommandRecord>>;
    async fn command_batch(&self, scope: Scope, id: i64) -> StoreResult<CommandBatch>;
    /// Cancels a command still waiting for its phone; `Conflict` once it has gone out.
    async fn cancel_command(
        &self,
        id: i64,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<CommandRecord>;
    /// The phone's next commands for a check-in answer, marked sent: pending and due, highest
    /// priority first, then in the order queued. Commands past their expiry are marked expired
    /// instead. Writes nothing when nothing is due.
    async fn take_commands(
        &self,
        device_id: i64,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<(i64, String)>>;
    /// Applies a phone's answer to one of its commands (`NotFound` if the command is not the
    /// phone's). The domain decides what the answer does.
    async fn record_answer(
        &self,
        device_id: i64,
        command_id: i64,
        status: CommandStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> StoreResult<AnswerOutcome>;
    /// The phones with commands still waiting (queued, sent or put off).
    async fn devices_with_pending_commands(&self) -> StoreResult<Vec<i64>>;
    /// Marks commands past their expiry as expired and deletes finished commands (and empty
    /// batches) older than `finished_before`. Returns (expired, deleted).
    async fn sweep_commands(
        &self,
        now: DateTime<Utc>,
        finished_before: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)>;
}
