//! Who is calling: the bearer token resolved to a live session, its account and organisation.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use std::net::{IpAddr, SocketAddr};

use super::{ApiError, AppState};
use crate::auth::hash_token;
use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::organisation::OrgKind;
use crate::domain::role::Actor;
use crate::store::{SessionKind, StoreError};

/// An authenticated caller whose account may use the API. An account that must still change
/// its one-time password gets 403 `password-change-required` everywhere except
/// [`PasswordChanger`]'s routes.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub email: String,
    pub session_id: i64,
    pub session_kind: SessionKind,
    pub source: Option<String>,
}

/// An authenticated caller that may still have to change its password.
#[derive(Debug, Clone)]
pub struct PasswordChanger(pub Caller, pub bool);

/// The client's address for the audit trail: the socket peer, or, when the peer is a trusted
/// reverse proxy, the nearest address in `X-Forwarded-For` that is not one of them.
pub fn source_of(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    trusted_proxies: &[IpAddr],
) -> Option<String> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer.to_string());
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    let client = forwarded
        .into_iter()
        .rev()
        .find(|a| !trusted_proxies.contains(a))
        .unwrap_or(peer);
    Some(client.to_string())
}

/// The client's address, for the audit trail.
#[derive(Debug, Clone)]
pub struct Source(pub Option<String>);

impl FromRequestParts<AppState> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Source(source_of(
            &parts.extensions,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

impl Caller {
    /// An audit event done by this caller, belonging to the caller's own organisation.
    pub fn event(&self, action: &str, target_kind: &str, target_id: Option<String>) -> AuditEvent {
        AuditEvent {
            actor_id: Some(self.actor.account_id),
            actor_label: self.email.clone(),
            org_id: Some(self.actor.org_id),
            source: self.source.clone(),
            action: action.to_string(),
            target_kind: Some(target_kind.to_string()),
            target_id,
            outcome: Outcome::Success,
            details: "{}".to_string(),
        }
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<(Caller, bool), ApiError> {
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "log in and send the session token as 'Authorization: Bearer <token>'",
            )
        })?;
    let now = state.clock.now();
    let ctx = match state
        .store
        .session_by_token(&hash_token(token.trim()), now)
        .await
    {
        Ok(ctx) => ctx,
        Err(StoreError::NotFound) => {
            return Err(ApiError::unauthenticated(
                "the session has expired or was ended; log in again",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    if !ctx.account.active {
        return Err(ApiError::unauthenticated("the account is deactivated"));
    }
    if ctx.org_kind == OrgKind::Provider {
        let today = state.clock.today(state.config.time_zone);
        if !ctx.contract.is_some_and(|c| c.is_active_on(today)) {
            return Err(contract_ended());
        }
    }
    let caller = Caller {
        actor: Actor {
            account_id: ctx.account.id,
            org_id: ctx.account.org_id,
            role: ctx.account.role,
        },
        email: ctx.account.email,
        session_id: ctx.session_id,
        session_kind: ctx.kind,
        source: source_of(
            &parts.extensions,
            &parts.headers,
            &state.config.trusted_proxies,
        ),
    };
    Ok((caller, ctx.account.must_change_password))
}

pub fn contract_ended() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "contract-ended",
        "Contract ended",
        "the provider's contract with the operator is not in force, so its accounts cannot use the system",
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (caller, must_change) = authenticate(parts, state).await?;
        if must_change {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "password-change-required",
                "Password change required",
                "change the one-time password first: POST /api/v1/me/password",
            ));
        }
        Ok(caller)
    }
}

impl FromRequestParts<AppState> for PasswordChanger {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (caller, must_change) = authenticate(parts, state).await?;
        Ok(PasswordChanger(caller, must_change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Extensions, HeaderMap, HeaderValue};

    fn from(peer: &str, forwarded: Option<&str>, trusted: &[&str]) -> Option<String> {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::new(
            peer.parse().expect("ip"),
            40000,
        )));
        let mut headers = HeaderMap::new();
        if let Some(f) = forwarded {
            headers.insert("x-forwarded-for", HeaderValue::from_str(f).expect("header"));
        }
        let trusted: Vec<IpAddr> = trusted.iter().map(|t| t.parse().expect("ip")).collect();
        source_of(&extensions, &headers, &trusted)
    }

    #[test]
    fn the_peer_is_the_source_unless_it_is_a_trusted_proxy() {
        assert_eq!(
            from("192.0.2.7", Some("203.0.113.9"), &[]).as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(
            from(
                "10.0.0.2",
                Some("203.0.113.9, 10.0.0.1"),
                &["10.0.0.1", "10.0.0.2"]
            )
            .as_deref(),
            Some("203.0.113.9")
        );
        // A client cannot hide behind an address it puts in the header itself.
        assert_eq!(
            from("10.0.0.2", Some("198.51.100.1, 203.0.113.9"), &["10.0.0.2"]).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            from("10.0.0.2", None, &["10.0.0.2"]).as_deref(),
            Some("10.0.0.2")
        );
    }
}
