//! The catalogue of phone models and which are supported.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{checked, ApiError, ApiJson, ApiPath, Fields};
use super::AppState;
use super::{catalogue, present};
use crate::domain::calendar::check_date;
use crate::domain::device::Platform;
use crate::domain::organisation::parse_name;
use crate::store::DeviceModel;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models, create_model))
        .routes(routes!(update_model))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    pub id: i64,
    pub platform: Platform,
    pub name: String,
    pub recommended_since: Option<NaiveDate>,
    /// The current recommended model or one of the models the contracts keep supported.
    pub supported: bool,
}

fn view(m: DeviceModel, supported: &HashSet<i64>) -> ModelView {
    ModelView {
        supported: supported.contains(&m.id),
        id: m.id,
        platform: m.platform,
        name: m.name,
        recommended_since: m.recommended_since,
    }
}

/// Every model in the catalogue with whether it is supported today.
#[utoipa::path(get, path = "/api/v1/models", tag = "models", security(("bearer" = [])),
    responses((status = 200, body = Vec<ModelView>)))]
async fn list_models(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<ModelView>>, ApiError> {
    let (models, supported) = catalogue(&state).await?;
    Ok(Json(
        models.into_iter().map(|m| view(m, &supported)).collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModelBody {
    /// android or ios.
    pub platform: String,
    pub name: String,
    /// The day this became the recommended model, if it is or was.
    pub recommended_since: Option<NaiveDate>,
}

/// Add a model to the catalogue (operator admin).
#[utoipa::path(post, path = "/api/v1/models", tag = "models", security(("bearer" = [])), request_body = NewModelBody,
    responses((status = 201, body = ModelView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn create_model(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewModelBody>,
) -> Result<(StatusCode, Json<ModelView>), ApiError> {
    caller.actor.require_operator_admin()?;
    let mut fields = Fields::default();
    let platform = fields.check(Platform::parse(&body.platform));
    let name = fields.check(parse_name("name", &body.name));
    fields.check(check_date("recommended_since", body.recommended_since));
    fields.finish()?;
    let (platform, name) = (checked(platform)?, checked(name)?);
    let event = caller
        .event("model.create", "model", None)
        .details(serde_json::json!({ "platform": platform.as_str(), "name": name }));
    let model = state
        .store
        .create_model(
            platform,
            &name,
            body.recommended_since,
            state.clock.now(),
            event,
        )
        .await?;
    // Check-ins judge compliance (supported models) from the policy board.
    state.refresh_policy_board().await;
    let (_, supported) = catalogue(&state).await?;
    Ok((StatusCode::CREATED, Json(view(model, &supported))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelChangeBody {
    /// The day this became the recommended model; `null` if it never was.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>)]
    pub recommended_since: Option<Option<NaiveDate>>,
}

/// Record when a model became the recommended one (operator admin).
#[utoipa::path(patch, path = "/api/v1/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ModelChangeBody,
    responses((status = 200, body = ModelView), (status = 404, body = super::problem::Problem)))]
async fn update_model(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ModelChangeBody>,
) -> Result<Json<ModelView>, ApiError> {
    caller.actor.require_operator_admin()?;
    let Some(recommended_since) = body.recommended_since else {
        return Err(ApiError::validation(vec![super::problem::FieldError {
            field: "recommended_since".into(),
            message: "is required (a date, or null)".into(),
        }]));
    };
    check_date("recommended_since", recommended_since)?;
    let event = caller
        .event("model.update", "model", Some(id.to_string()))
        .details(serde_json::json!({ "recommended_since": recommended_since }));
    let model = state
        .store
        .set_model_recommended(id, recommended_since, state.clock.now(), event)
        .await?;
    state.refresh_policy_board().await;
    let (_, supported) = catalogue(&state).await?;
    Ok(Json(view(model, &supported)))
}
