//! Prometheus metrics at `/metrics` (the registry is the node's, in `state::metrics`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::text::encode;

use super::AppState;

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = String::new();
    let encoded = state
        .metrics
        .with_registry(|registry| encode(&mut text, registry));
    if encoded.is_err() {
        text.clear();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
