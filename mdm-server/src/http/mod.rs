//! The JSON API under `/api/v1`, health and metrics. Handlers parse and authorise; the
//! domain decides; the store persists.

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub mod agent;
pub mod apple;
pub mod audit;
pub mod calendar;
pub mod caller;
pub mod commands;
pub mod common;
pub mod deliveries;
pub mod device_connection;
pub mod devices;
pub mod enrollment;
pub mod imports;
pub mod leases;
pub mod login;
pub mod lost_cases;
pub mod maintenance;
pub mod metrics;
pub mod models;
pub mod policies;
pub mod problem;
pub mod providers;
pub mod push_certificate;
pub mod requests;
mod schemas;
pub mod sims;
pub mod users;
pub mod warranty;

pub use crate::state::AppState;
pub use common::{catalogue, present, public_base, signed_profile, LeaseView};
pub use device_connection::Peer;
pub use problem::{ApiError, ApiJson, ApiPath, ApiQuery};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Municipal phone-fleet MDM",
        description = "Device inventory, organisations, accounts and audit trail of the municipal phone-fleet MDM. \
                       Errors are RFC 9457 problem documents with stable `type` values.",
        version = "1"
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Login, sessions and API tokens"),
        (name = "providers", description = "Provider organisations and their IT contacts"),
        (name = "users", description = "Personal accounts"),
        (name = "models", description = "The catalogue of supported phone models"),
        (name = "devices", description = "The device inventory"),
        (name = "enrollment", description = "Enrollment tokens and device identities"),
        (name = "policies", description = "The standard phone: policy layers, the app catalogue and each phone's effective policy"),
        (name = "commands", description = "Commands to phones: lock, wipe, lost mode, apps, refresh, restart; to one phone or a whole provider"),
        (name = "leasing", description = "Leases and holders, wipe before reassign, phone requests with working-day deadlines, lost and stolen cases, warranty cases, SIM subscriptions, reminders"),
        (name = "maintenance", description = "Planned maintenance, disruptions, notices, their delivery and the calendar feed"),
        (name = "audit", description = "The hash-chained audit trail")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API routes and the OpenAPI document generated from them.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(login::routes())
        .merge(providers::routes())
        .merge(users::routes())
        .merge(models::routes())
        .merge(devices::routes())
        .merge(enrollment::routes())
        .merge(push_certificate::routes())
        .merge(policies::routes())
        .merge(commands::routes())
        .merge(leases::routes())
        .merge(requests::routes())
        .merge(lost_cases::routes())
        .merge(sims::routes())
        .merge(warranty::routes())
        .merge(maintenance::routes())
        .merge(deliveries::routes())
        .merge(imports::routes())
        .merge(calendar::routes())
        .merge(audit::routes())
        .split_for_parts()
}

/// The device listener's routes: the agent's and the iPhones' (SCEP and Apple's MDM protocol).
pub fn device_router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .merge(agent::routes())
        .merge(apple::routes())
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(max_body))
        // Phones check in all day: their requests are logged at debug, or they would bury what
        // people did.
        .layer(access_log(tracing::Level::DEBUG))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

type AccessLog = tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&Request) -> tracing::Span,
    (),
    tower_http::trace::DefaultOnResponse,
>;

/// One line per answered request: its id (`x-request-id`, given back in the answer), method,
/// route template (never the raw path or query, which can hold ids and calendar-feed tokens),
/// status and latency. Server errors are logged at error level as well.
fn access_log(level: tracing::Level) -> AccessLog {
    fn request_span(req: &Request) -> tracing::Span {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", |p| p.as_str());
        tracing::info_span!("request", id = %id, method = %req.method(), route = %route)
    }
    tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request) -> tracing::Span)
        .on_request(())
        .on_response(
            tower_http::trace::DefaultOnResponse::new()
                .level(level)
                .latency_unit(tower_http::LatencyUnit::Millis),
        )
}

/// The OpenAPI document as served at `/api/v1/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api().1
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = api();
    let doc = Arc::new(doc);
    let max_body = state.config.max_body_bytes;
    Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(access_log(tracing::Level::INFO))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "database not reachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database not reachable").into_response()
        }
    }
}

/// Counts and times every request by route template (never by raw path, which holds ids), and
/// records refused attempts of logged-in callers (403 and 404) in the audit trail.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let path = req.uri().path().to_string();
    let source = caller::source_of(
        req.extensions(),
        req.headers(),
        &state.config.trusted_proxies,
    );
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    state
        .metrics
        .record(&method, &route, status.as_u16(), started.elapsed());
    if matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) && route != "unmatched" {
        if let Some(token) = bearer {
            record_refusal(&state, &token, &format!("{method} {path}"), source, status).await;
        }
    }
    response
}

/// Looking at another organisation's ids or beyond one's role is worth following up.
async fn record_refusal(
    state: &AppState,
    token: &str,
    request: &str,
    source: Option<String>,
    status: StatusCode,
) {
    let now = state.clock.now();
    let Ok(session) = state
        .store
        .session_by_token(&crate::auth::hash_token(token), now)
        .await
    else {
        return;
    };
    let event = crate::domain::audit::AuditEvent {
        actor_id: Some(session.account.id),
        actor_label: session.account.email.clone(),
        org_id: Some(session.account.org_id),
        source,
        action: "access.refused".to_string(),
        target_kind: Some("request".to_string()),
        target_id: Some(request.chars().take(300).collect()),
        outcome: crate::domain::audit::Outcome::Denied,
        details: serde_json::json!({ "status": status.as_u16() }).to_string(),
    };
    if let Err(e) = state.store.append_audit(event, now).await {
        tracing::warn!(error = %e, "could not record a refused request");
    }
}
