//! Reading the audit trail: operator admins read all of it, provider admins their own
//! organisation's, as JSON pages or as CSV.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{ApiError, ApiQuery, Fields};
use super::AppState;
use crate::domain::audit::AuditEntry;
use crate::domain::role::{Role, Scope};
use crate::store::AuditFilter;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(export_audit))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub seq: i64,
    pub at: DateTime<FixedOffset>,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub organisation_id: Option<i64>,
    pub source: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub details: serde_json::Value,
}

impl AuditView {
    fn new(state: &AppState, e: AuditEntry) -> Self {
        AuditView {
            seq: e.seq,
            at: state.local(e.at),
            actor_id: e.event.actor_id,
            actor: e.event.actor_label,
            organisation_id: e.event.org_id,
            source: e.event.source,
            action: e.event.action,
            target_kind: e.event.target_kind,
            target_id: e.event.target_id,
            outcome: e.event.outcome.as_str().to_string(),
            details: serde_json::from_str(&e.event.details).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries older than this sequence number.
    pub before: Option<i64>,
    /// Page size, 1 to 500 (default 100).
    pub limit: Option<u32>,
}

fn audit_scope(caller: &Caller) -> Result<Scope, ApiError> {
    match caller.actor.role {
        Role::OperatorAdmin => Ok(Scope::Everything),
        Role::ProviderAdmin => Ok(Scope::Organisation(caller.actor.org_id)),
        _ => Err(ApiError::forbidden(
            "your role does not allow reading the audit trail",
        )),
    }
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = super::problem::Problem)))]
async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let scope = audit_scope(&caller)?;
    let limit = query.limit.unwrap_or(100);
    let mut fields = Fields::default();
    if !(1..=500).contains(&limit) {
        fields.push("limit", "must be between 1 and 500");
    }
    fields.finish()?;
    // Reading the trail is itself recorded: it shows who did what.
    let event = caller
        .event("audit.read", "audit", None)
        .in_org(scope.org());
    state.store.append_audit(event, state.clock.now()).await?;
    let mut entries = state
        .store
        .list_audit(&AuditFilter {
            scope: scope.org(),
            before_seq: query.before,
            limit: limit + 1,
        })
        .await?;
    let next_before = if entries.len() > limit as usize {
        entries.truncate(limit as usize);
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(AuditPage {
        items: entries
            .into_iter()
            .map(|e| AuditView::new(&state, e))
            .collect(),
        next_before,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `comma` (the default) or `semicolon`, which a spreadsheet set to Swedish expects.
    pub separator: Option<String>,
}

/// The whole trail the caller may read, as CSV, oldest first. UTF-8 with a byte-order mark, so
/// that a spreadsheet shows å, ä and ö as they are.
#[utoipa::path(get, path = "/api/v1/audit/export.csv", tag = "audit", security(("bearer" = [])),
    params(ExportQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = super::problem::Problem)))]
async fn export_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let delimiter = match query.separator.as_deref() {
        None | Some("comma") => b',',
        Some("semicolon") => b';',
        Some(_) => {
            return Err(super::problem::invalid(
                "separator",
                "must be comma or semicolon",
            ))
        }
    };
    let scope = audit_scope(&caller)?;
    let event = caller
        .event("audit.export", "audit", None)
        .in_org(scope.org());
    state.store.append_audit(event, state.clock.now()).await?;
    let mut out = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer("\u{feff}".as_bytes().to_vec());
    let internal =
        |e: csv::Error| ApiError::from(crate::store::StoreError::Unsupported(e.to_string()));
    out.write_record([
        "seq",
        "at",
        "actor_id",
        "actor",
        "organisation_id",
        "source",
        "action",
        "target_kind",
        "target_id",
        "outcome",
        "details",
        "hash",
    ])
    .map_err(internal)?;
    let mut after = 0;
    loop {
        let page = state.store.audit_page(scope.org(), after, 1000).await?;
        // Attempted e-mail addresses are attacker-chosen text; keep spreadsheets from running them.
        let cell = |text: String| -> String {
            if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{text}")
            } else {
                text
            }
        };
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in page {
            let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
            out.write_record([
                e.seq.to_string(),
                state.local(e.at).to_rfc3339(),
                opt(e.event.actor_id),
                cell(e.event.actor_label),
                opt(e.event.org_id),
                cell(e.event.source.unwrap_or_default()),
                e.event.action,
                e.event.target_kind.unwrap_or_default(),
                cell(e.event.target_id.unwrap_or_default()),
                e.event.outcome.as_str().to_string(),
                e.event.details,
                e.hash,
            ])
            .map_err(internal)?;
        }
    }
    let body = out
        .into_inner()
        .map_err(|e| internal(e.into_error().into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ),
        ],
        body,
    ))
}
