//! The outbox as the operator sees it: every message to every IT contact, its attempts, and
//! the dead-letter list of messages that could not be delivered.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{ApiError, ApiPath, ApiQuery};
use super::AppState;
use crate::store::notices::{Delivery, DeliveryFilter, DeliveryState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(retry_delivery))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempted_at: DateTime<FixedOffset>,
    /// The server node that tried.
    pub node: String,
    pub sent: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    /// `notice` (maintenance and disruptions) or `compliance` (a phone non-compliant past the
    /// grace period).
    pub topic: String,
    pub notice_id: Option<i64>,
    pub window_id: Option<i64>,
    /// The kind of notice (`announced`, `reminder`, …), for a notice's message.
    pub notice: Option<String>,
    /// The phone a compliance alert is about.
    pub device_id: Option<i64>,
    /// `email`, `sms` or `webhook`.
    pub channel: String,
    pub recipient: String,
    pub provider_id: Option<i64>,
    pub subject: String,
    /// `pending`, `sent` or `dead` (gave up; retry it by hand).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<FixedOffset>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<FixedOffset>>,
    /// Sent well after it was due (the server was down).
    pub late: bool,
    pub idempotency_key: String,
    pub created_at: DateTime<FixedOffset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<AttemptView>>,
}

impl DeliveryView {
    fn new(state: &AppState, d: Delivery) -> Self {
        DeliveryView {
            id: d.id,
            topic: d.topic,
            notice_id: d.notice_id,
            window_id: d.window_id,
            notice: d.notice_kind.map(|k| k.as_str().to_string()),
            device_id: d.device_id,
            channel: d.channel.as_str().to_string(),
            recipient: d.recipient,
            provider_id: d.provider_id,
            subject: d.subject,
            state: d.state.as_str().to_string(),
            attempts: d.attempts,
            next_attempt_at: state.local(d.next_attempt_at),
            last_error: d.last_error,
            sent_at: d.sent_at.map(|t| state.local(t)),
            late: d.late,
            idempotency_key: d.idempotency_key,
            created_at: state.local(d.created_at),
            history: None,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `sent` or `dead` (the dead-letter list).
    pub state: Option<String>,
    pub window_id: Option<i64>,
    /// Deliveries with ids below this (the cursor; newest first).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// Outbox rows, newest first (operator). `?state=dead` is the dead-letter list.
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "maintenance", security(("bearer" = [])),
    params(DeliveryQuery), responses((status = 200, body = Vec<DeliveryView>)))]
async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    caller.actor.require_operator()?;
    let wanted = match q.state.as_deref() {
        None => None,
        Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid-query", "state must be pending, sent or dead")
        })?),
    };
    let filter = DeliveryFilter {
        state: wanted,
        window_id: q.window_id,
        before_id: q.before,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let rows = state.store.list_deliveries(&filter).await?;
    Ok(Json(
        rows.into_iter()
            .map(|d| DeliveryView::new(&state, d))
            .collect(),
    ))
}

/// One outbox row with every attempt (operator).
#[utoipa::path(get, path = "/api/v1/deliveries/{id}", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = DeliveryView), (status = 404, body = super::problem::Problem)))]
async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeliveryView>, ApiError> {
    caller.actor.require_operator()?;
    let d = state.store.delivery(id).await?;
    let attempts = state.store.delivery_attempts(id).await?;
    let mut view = DeliveryView::new(&state, d);
    view.history = Some(
        attempts
            .into_iter()
            .map(|a| AttemptView {
                attempted_at: state.local(a.attempted_at),
                node: a.node,
                sent: a.sent,
                error: a.error,
            })
            .collect(),
    );
    Ok(Json(view))
}

/// Put a dead-lettered message back in the queue (operator admin), after the relay or gateway
/// is fixed.
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/retry", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = DeliveryView), (status = 409, body = super::problem::Problem)))]
async fn retry_delivery(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeliveryView>, ApiError> {
    caller.actor.require_operator_admin()?;
    let event = caller.event("delivery.retry", "delivery", Some(id.to_string()));
    let d = state
        .store
        .retry_delivery(id, state.clock.now(), event)
        .await?;
    state.notice_wake.notify_one();
    Ok(Json(DeliveryView::new(&state, d)))
}
