//! Each provider's planned maintenance as an iCalendar feed (RFC 5545) that calendar apps
//! subscribe to. Calendar apps cannot log in, so the feed sits behind a secret URL; the
//! provider's admin or the operator makes a new one, which ends the old.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use icalendar::{Calendar, Component, Event, EventLike, EventStatus};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{ApiError, ApiPath};
use super::{public_base, AppState};
use crate::domain::role::Role;
use crate::store::notices::{Window, WindowFilter};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rotate_feed))
        .routes(routes!(feed))
}

/// Windows that ended longer ago than this are left out of the feed.
const FEED_HISTORY: chrono::Duration = chrono::Duration::days(90);

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedView {
    /// The secret address to subscribe to; shown once.
    pub url: String,
    pub path: String,
}

/// Make a new secret calendar feed address for a provider (operator admin or the provider's
/// admin); the previous address stops working.
#[utoipa::path(post, path = "/api/v1/providers/{id}/calendar-feed", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 201, body = FeedView), (status = 403, body = super::problem::Problem), (status = 404, body = super::problem::Problem)))]
async fn rotate_feed(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<FeedView>), ApiError> {
    if !caller.actor.scope().allows(Some(id)) {
        return Err(ApiError::not_found());
    }
    let org = state.store.organisation(id).await?;
    if org.kind != crate::domain::organisation::OrgKind::Provider {
        return Err(ApiError::not_found());
    }
    if !matches!(caller.actor.role, Role::OperatorAdmin | Role::ProviderAdmin) {
        return Err(ApiError::forbidden(
            "calendar feeds are managed by the operator admin and the provider's admins",
        ));
    }
    let (token, hash) = crate::auth::generate_token();
    let event = caller
        .event("calendar_feed.rotate", "organisation", Some(id.to_string()))
        .in_org(Some(id));
    state
        .store
        .set_calendar_feed(id, &hash, state.clock.now(), event)
        .await?;
    let path = format!("/calendar/{token}.ics");
    let base = public_base(&state, &headers);
    Ok((
        StatusCode::CREATED,
        Json(FeedView {
            url: format!("{base}{path}"),
            path,
        }),
    ))
}

/// A provider's planned maintenance and disruptions as iCalendar, for the secret in the path.
#[utoipa::path(get, path = "/calendar/{file}", tag = "maintenance",
    params(("file" = String, Path, description = "the secret followed by .ics")),
    responses((status = 200, content_type = "text/calendar", body = String), (status = 404, body = super::problem::Problem)))]
async fn feed(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let token = file.strip_suffix(".ics").unwrap_or(&file);
    if token.len() > 100 {
        return Err(ApiError::not_found());
    }
    let provider_id = state
        .store
        .calendar_feed_provider(&crate::auth::hash_token(token))
        .await?;
    let now = state.clock.now();
    let windows = state
        .store
        .list_windows(&WindowFilter {
            provider_id: Some(provider_id),
            ending_after: Some(now - FEED_HISTORY),
            limit: 500,
            ..Default::default()
        })
        .await?;
    let body = render(&state.config.operator_name, &windows, now);
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response())
}

/// The calendar: one event per window, in UTC, with SEQUENCE counting its changes so that
/// calendar apps replace a moved or cancelled event.
pub fn render(
    operator_name: &str,
    windows: &[Window],
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut calendar = Calendar::new();
    calendar.name(&format!("{operator_name}: planerat underhåll"));
    for w in windows {
        let mut event = Event::new();
        event
            .uid(&format!("maintenance-window-{}@mdm", w.id))
            .summary(&w.text.title)
            .timestamp(now)
            .last_modified(w.updated_at)
            .sequence(u32::try_from(w.revision).unwrap_or(0))
            .starts(w.starts_at)
            .status(if w.cancelled_at.is_some() {
                EventStatus::Cancelled
            } else {
                EventStatus::Confirmed
            });
        if let Some(end) = w.ends_at {
            event.ends(end);
        }
        let mut description = w.text.description.clone();
        if !w.text.systems.is_empty() {
            if !description.is_empty() {
                description.push_str("\n\n");
            }
            description.push_str(&format!("System: {}", w.text.systems.join(", ")));
        }
        if !description.is_empty() {
            event.description(&description);
        }
        calendar.push(event.done());
    }
    calendar.done().to_string()
}
