//! What several handlers share: the model catalogue with the models supported today, the lease
//! as every leasing answer shows it, the reading of fields that may be sent as `null`, the
//! server's address as people reach it, and signed Apple profiles.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashSet;
use utoipa::ToSchema;

use super::problem::ApiError;
use super::AppState;
use crate::domain::model::{supported_models, ModelGeneration};
use crate::store::leasing::Lease;
use crate::store::DeviceModel;

/// The catalogue and the ids of the supported models today.
pub async fn catalogue(state: &AppState) -> Result<(Vec<DeviceModel>, HashSet<i64>), ApiError> {
    let models = state.store.list_models().await?;
    let generations: Vec<ModelGeneration> = models
        .iter()
        .map(|m| ModelGeneration {
            id: m.id,
            platform: m.platform,
            recommended_since: m.recommended_since,
        })
        .collect();
    let supported = supported_models(
        &generations,
        state.clock.today(state.config.time_zone),
        state.config.supported_generations_back,
    );
    Ok((models, supported))
}

/// Distinguishes a field left out (keep it) from one sent as `null` (clear it).
pub fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A lease: which phone, which provider, when, what it costs and the data included (calls and
/// SMS are free).
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseView {
    pub id: i64,
    pub device_id: i64,
    pub serial: String,
    pub provider_id: i64,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
    /// In kronor.
    pub monthly_price_sek: f64,
    /// Mobile data included each month.
    pub data_gb: i64,
    /// The phone request it fulfils.
    pub request_id: Option<i64>,
    /// The lease of a written-off phone this one replaces.
    pub replaces_lease_id: Option<i64>,
    pub created_by: Option<i64>,
    pub created_at: DateTime<FixedOffset>,
    pub ended_at: Option<DateTime<FixedOffset>>,
    /// `returned`, `contract_ended` or `written_off`.
    pub end_reason: Option<String>,
    /// The provider user holding the phone now; `null` while it is in the provider's pool.
    pub holder_id: Option<i64>,
}

impl LeaseView {
    pub fn new(state: &AppState, l: Lease) -> Self {
        LeaseView {
            id: l.id,
            device_id: l.device_id,
            serial: l.serial,
            provider_id: l.provider_id,
            starts_on: l.starts_on,
            ends_on: l.ends_on,
            monthly_price_sek: l.monthly_price_ore as f64 / 100.0,
            data_gb: l.data_gb,
            request_id: l.request_id,
            replaces_lease_id: l.replaces_lease_id,
            created_by: l.created_by,
            created_at: state.local(l.created_at),
            ended_at: l.ended_at.map(|t| state.local(t)),
            end_reason: l.end_reason,
            holder_id: l.holder_id,
        }
    }
}

/// The API's address as people reach it: the configured public URL, or else the request's host.
pub fn public_base(state: &AppState, headers: &axum::http::HeaderMap) -> String {
    match &state.config.public_url {
        Some(public) => public.trim_end_matches('/').to_string(),
        None => format!(
            "http://{}",
            headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
        ),
    }
}

/// A configuration profile signed by the device CA's profile signer, as the answer that hands
/// it to a phone or a person (`application/x-apple-aspen-config`).
pub fn signed_profile(
    state: &AppState,
    profile: &plist::Dictionary,
    file_name: &str,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let signed = crate::flows::apple::sign_profile(state, profile)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/x-apple-aspen-config".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        signed,
    )
        .into_response())
}
