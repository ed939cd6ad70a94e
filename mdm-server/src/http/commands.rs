//! Commands to phones: lock, wipe, lost mode, install or remove an app, refresh, restart; to one
//! phone or to every phone of a provider, followed from queued to answered. The rules live in
//! `domain::command`; the queue in `store::commands`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{invalid, ApiError, ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::domain::command::{priority_name, CheckedCommand, CommandRequest, CommandState};
use crate::domain::organisation::OrgKind;
use crate::flows;
use crate::store::commands::{CommandBatch, CommandFilter, CommandRecord};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send_command, list_device_commands))
        .routes(routes!(get_command))
        .routes(routes!(cancel_command))
        .routes(routes!(send_to_provider))
        .routes(routes!(get_batch))
        .routes(routes!(list_batch_commands))
}

/// A command to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCommandBody {
    /// `lock`, `wipe`, `lost_mode_on`, `lost_mode_off`, `install_app`, `remove_app`,
    /// `refresh_information` or `restart`.
    pub kind: String,
    /// Shown on the lock screen (lock and lost mode), at most 200 characters.
    pub message: Option<String>,
    /// The support number shown with it, E.164.
    pub phone_number: Option<String>,
    /// The app's catalogue key (install and remove).
    pub app: Option<String>,
    /// `high`, `normal` or `low`; lock, wipe and lost mode default to high, the rest to normal.
    pub priority: Option<String>,
    /// How long the command waits for the phone before it expires: 1 to 2160 hours, default
    /// 168 (a week).
    pub expires_in_hours: Option<u32>,
}

impl NewCommandBody {
    fn into_request(self) -> CommandRequest {
        CommandRequest {
            kind: self.kind,
            message: self.message,
            phone_number: self.phone_number,
            app: self.app,
            priority: self.priority,
            expires_in_hours: self.expires_in_hours,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommandView {
    pub id: i64,
    pub device_id: i64,
    pub batch_id: Option<i64>,
    pub kind: String,
    /// The command exactly as the phone receives it.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// `high`, `normal` or `low`.
    pub priority: String,
    /// `queued`, `sent`, `acknowledged`, `error`, `not_now`, `expired` or `cancelled`.
    pub state: String,
    pub created_by: Option<i64>,
    pub created_at: DateTime<FixedOffset>,
    pub expires_at: DateTime<FixedOffset>,
    pub sent_at: Option<DateTime<FixedOffset>>,
    /// How many times it went to the phone.
    pub attempts: i64,
    pub finished_at: Option<DateTime<FixedOffset>>,
    /// The phone's error text, or why the command was cancelled.
    pub result: Option<String>,
}

impl CommandView {
    fn new(state: &AppState, c: CommandRecord) -> Self {
        CommandView {
            id: c.id,
            device_id: c.device_id,
            batch_id: c.batch_id,
            kind: c.kind.to_string(),
            payload: serde_json::from_str(&c.payload).unwrap_or_default(),
            priority: priority_name(c.priority).to_string(),
            state: c.state.as_str().to_string(),
            created_by: c.created_by,
            created_at: state.local(c.created_at),
            expires_at: state.local(c.expires_at),
            sent_at: c.sent_at.map(|t| state.local(t)),
            attempts: c.attempts,
            finished_at: c.finished_at.map(|t| state.local(t)),
            result: c.result,
        }
    }
}

/// A command sent to every phone of a provider, with how many of its commands are in each state.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    pub id: i64,
    pub provider_id: i64,
    pub kind: String,
    /// How many phones it was queued for.
    pub queued: i64,
    pub created_by: Option<i64>,
    pub created_at: DateTime<FixedOffset>,
    /// Commands per state, such as `{"acknowledged": 998, "error": 2}`.
    #[schema(value_type = Object)]
    pub states: serde_json::Map<String, serde_json::Value>,
}

impl BatchView {
    fn new(state: &AppState, b: CommandBatch) -> Self {
        BatchView {
            id: b.id,
            provider_id: b.provider_id,
            kind: b.kind.to_string(),
            queued: b.queued,
            created_by: b.created_by,
            created_at: state.local(b.created_at),
            states: b
                .states
                .into_iter()
                .map(|(s, n)| (s.as_str().to_string(), n.into()))
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommandQuery {
    /// Only commands in this state.
    pub state: Option<String>,
    /// Commands with ids below this (the cursor; newest first).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

impl CommandQuery {
    fn filter(&self) -> Result<CommandFilter, ApiError> {
        let state = self
            .state
            .as_deref()
            .map(CommandState::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid-query", e.message().to_string()))?;
        Ok(CommandFilter {
            state,
            before_id: self.before,
            limit: self.limit.unwrap_or(100).clamp(1, 1000),
            ..CommandFilter::default()
        })
    }
}

/// The command checked on its own, and permitted for the caller.
fn checked(
    caller: &Caller,
    body: NewCommandBody,
    fan_out: bool,
) -> Result<CheckedCommand, ApiError> {
    caller.actor.require_operator()?;
    let command = body
        .into_request()
        .check()
        .map_err(|e| invalid(e.field(), e.message()))?;
    caller.actor.may_send_command(command.kind, fan_out)?;
    if fan_out {
        command
            .allowed_in_fan_out()
            .map_err(|e| invalid(e.field(), e.message()))?;
    }
    Ok(command)
}

/// Queue a command for one phone (operator; wipes by operator admins only). The phone must be
/// enrolled and not retired; it gets the command at its next check-in.
#[utoipa::path(post, path = "/api/v1/devices/{id}/commands", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = NewCommandBody,
    responses((status = 201, body = CommandView), (status = 400, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem)))]
async fn send_command(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewCommandBody>,
) -> Result<(StatusCode, Json<CommandView>), ApiError> {
    let command = checked(&caller, body, false)?;
    let device = state.store.device(caller.actor.scope(), id).await?;
    let event = caller.event("command.queue", "command", None);
    let record =
        flows::commands::queue(&state, &device, &command, caller.actor.account_id, event).await?;
    Ok((StatusCode::CREATED, Json(CommandView::new(&state, record))))
}

/// A phone's commands, newest first (providers see their own phones').
#[utoipa::path(get, path = "/api/v1/devices/{id}/commands", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path), CommandQuery), responses((status = 200, body = Vec<CommandView>)))]
async fn list_device_commands(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<CommandQuery>,
) -> Result<Json<Vec<CommandView>>, ApiError> {
    let device = state.store.device(caller.actor.scope(), id).await?;
    let filter = CommandFilter {
        device_id: Some(device.id),
        ..q.filter()?
    };
    listed(&state, &caller, &filter).await
}

/// The commands `filter` picks, within the caller's scope.
async fn listed(
    state: &AppState,
    caller: &Caller,
    filter: &CommandFilter,
) -> Result<Json<Vec<CommandView>>, ApiError> {
    let rows = state
        .store
        .list_commands(caller.actor.scope(), filter)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|c| CommandView::new(state, c))
            .collect(),
    ))
}

/// One command and what became of it.
#[utoipa::path(get, path = "/api/v1/commands/{id}", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = CommandView), (status = 404, body = super::problem::Problem)))]
async fn get_command(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CommandView>, ApiError> {
    let record = state.store.command(caller.actor.scope(), id).await?;
    Ok(Json(CommandView::new(&state, record)))
}

/// Take back a command the phone has not been sent (operator). Once sent it cannot be recalled.
#[utoipa::path(post, path = "/api/v1/commands/{id}/cancel", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = CommandView), (status = 409, body = super::problem::Problem)))]
async fn cancel_command(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CommandView>, ApiError> {
    caller.actor.require_operator()?;
    let current = state.store.command(caller.actor.scope(), id).await?;
    caller.actor.may_send_command(current.kind, false)?;
    if !current.state.is_cancellable() {
        return Err(not_cancellable(&current));
    }
    let event = caller
        .event("command.cancel", "command", Some(id.to_string()))
        .in_org(current.provider_id)
        .details(serde_json::json!({ "device_id": current.device_id, "kind": current.kind }));
    match state
        .store
        .cancel_command(id, state.clock.now(), event)
        .await
    {
        Ok(record) => Ok(Json(CommandView::new(&state, record))),
        // It went out between the check and the cancel.
        Err(crate::store::StoreError::Conflict(_)) => {
            let now = state.store.command(caller.actor.scope(), id).await?;
            Err(not_cancellable(&now))
        }
        Err(e) => Err(e.into()),
    }
}

fn not_cancellable(c: &CommandRecord) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "command-not-cancellable",
        "The command can no longer be cancelled",
        format!(
            "command {} is {}; only a command still queued or put off by the phone can be cancelled",
            c.id,
            c.state.as_str()
        ),
    )
}

/// Queue a command for every enrolled phone of a provider in one request (operator admin).
/// App commands go to the phones of the platforms the app exists on. Wipes are refused: they go
/// phone by phone.
#[utoipa::path(post, path = "/api/v1/providers/{id}/commands", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = NewCommandBody,
    responses((status = 201, body = BatchView), (status = 400, body = super::problem::Problem)))]
async fn send_to_provider(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NewCommandBody>,
) -> Result<(StatusCode, Json<BatchView>), ApiError> {
    let command = checked(&caller, body, true)?;
    let provider = state.store.organisation(id).await?;
    if provider.kind != OrgKind::Provider {
        return Err(ApiError::not_found());
    }
    let event = caller.event("command.fan_out", "command_batch", None);
    let batch = flows::commands::queue_to_provider(
        &state,
        &provider,
        &command,
        caller.actor.account_id,
        event,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(BatchView::new(&state, batch))))
}

/// A provider-wide command and how far its phones have got.
#[utoipa::path(get, path = "/api/v1/command-batches/{id}", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = BatchView), (status = 404, body = super::problem::Problem)))]
async fn get_batch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<BatchView>, ApiError> {
    let batch = state.store.command_batch(caller.actor.scope(), id).await?;
    Ok(Json(BatchView::new(&state, batch)))
}

/// The commands of a provider-wide batch, newest first; `?state=error` lists the phones that
/// failed.
#[utoipa::path(get, path = "/api/v1/command-batches/{id}/commands", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path), CommandQuery), responses((status = 200, body = Vec<CommandView>)))]
async fn list_batch_commands(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<CommandQuery>,
) -> Result<Json<Vec<CommandView>>, ApiError> {
    let batch = state.store.command_batch(caller.actor.scope(), id).await?;
    let filter = CommandFilter {
        batch_id: Some(batch.id),
        ..q.filter()?
    };
    listed(&state, &caller, &filter).await
}
