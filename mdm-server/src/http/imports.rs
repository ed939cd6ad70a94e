//! A supplier's delivery list imported over the API, by the same all-or-nothing flow as
//! `mdm-server devices import`: a file with any bad row imports nothing, and the answer names
//! every bad row by line.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{ApiError, ApiQuery, RowProblem};
use super::AppState;
use crate::domain::organisation::optional_text;
use crate::import::{import_csv, rows_at_fault, ImportError, MAX_ROWS};

/// The largest delivery list taken over the API: some 400,000 rows of a supplier's list.
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_devices))
        .layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The file's name, kept in the audit trail.
    pub file_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    /// Phones registered by this import, `in_stock`.
    pub inserted: u64,
    /// Rows whose phone was registered already (same serial and IMEI): a re-import adds nothing.
    pub already_present: u64,
}

fn is_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/csv"))
}

/// Import a delivery list (operator). The body is the CSV file with the header
/// `serial,imei,platform,model,purchase_date,warranty_end,supplier`, sent as `text/csv`.
/// All or nothing: any bad row (422 `invalid-rows`, every bad row in `rows`) imports nothing.
#[utoipa::path(post, path = "/api/v1/devices/import", tag = "devices", security(("bearer" = [])),
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv",
        description = "serial,imei,platform,model,purchase_date,warranty_end,supplier"),
    responses((status = 200, body = ImportResult),
              (status = 400, body = super::problem::Problem, description = "not CSV, or the wrong header (`invalid-csv`)"),
              (status = 413, body = super::problem::Problem),
              (status = 415, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem, description = "bad rows (`invalid-rows`), each in `rows`")))]
async fn import_devices(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportResult>, ApiError> {
    caller.actor.require_operator()?;
    if !is_csv(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the delivery list as the CSV file itself, with Content-Type: text/csv",
        ));
    }
    let file_name = optional_text("file_name", query.file_name.as_deref(), 200)?;
    let event = caller
        .event("device.import", "device", None)
        .details(serde_json::json!({ "file": file_name, "bytes": body.len() }));
    let imported = import_csv(
        body.as_ref(),
        state.store.as_ref(),
        state.clock.now(),
        event,
        &|_, _| {},
    )
    .await;
    match imported {
        Ok(summary) => Ok(Json(ImportResult {
            inserted: summary.inserted,
            already_present: summary.already_present,
        })),
        Err(ImportError::Rows(errors)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-rows",
            "Invalid rows",
            format!("{}; nothing was imported", rows_at_fault(&errors)),
        )
        .with_rows(
            errors
                .into_iter()
                .map(|e| RowProblem {
                    line: e.line,
                    reason: e.reason,
                })
                .collect(),
        )),
        Err(ImportError::TooLarge) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Body too large",
            format!("a delivery list has at most {MAX_ROWS} rows: split the file"),
        )),
        Err(e @ (ImportError::Csv(_) | ImportError::Header { .. })) => {
            Err(ApiError::bad_request("invalid-csv", e.to_string()))
        }
        Err(ImportError::Store(e)) => Err(e.into()),
    }
}
