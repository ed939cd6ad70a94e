//! Login with password and one-time code, logout, the caller's own account and API tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::{contract_ended, Caller, PasswordChanger, Source};
use super::problem::{ApiError, ApiJson, ApiPath, Fields};
use super::AppState;
use crate::auth::{self, Totp};
use crate::domain::account::check_password_strength;
use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::contact::Email;
use crate::domain::organisation::OrgKind;
use crate::domain::role::Role;
use crate::store::{Account, NewSession, SessionKind, StoreError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// Shown at every login: the contracts require that people are told their actions are logged.
pub const LOGGING_NOTICE: &str =
    "Dina åtgärder loggas och följs upp. / Your actions are logged and reviewed.";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The six-digit code from the authenticator app (not needed in demo mode).
    pub totp_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// The session token: send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: DateTime<FixedOffset>,
    /// When true, the only thing this session can do is change the password.
    pub must_change_password: bool,
    pub notice: String,
}

fn login_failed() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "login-failed",
        "Login failed",
        "the e-mail address, password or one-time code is wrong",
    )
}

fn login_event(
    account: Option<&Account>,
    email: &str,
    source: Option<String>,
    outcome: Outcome,
    reason: &str,
) -> AuditEvent {
    AuditEvent {
        actor_id: account.map(|a| a.id),
        actor_label: email.to_string(),
        org_id: account.map(|a| a.org_id),
        source,
        action: "auth.login".to_string(),
        target_kind: Some("account".to_string()),
        target_id: account.map(|a| a.id.to_string()),
        outcome,
        details: serde_json::json!({ "reason": reason }).to_string(),
    }
}

/// An attempted address as the audit trail records it: without control characters, bounded.
fn audit_label(raw: &str) -> String {
    raw.trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(254)
        .collect()
}

fn account_locked(state: &AppState, until: DateTime<Utc>, now: DateTime<Utc>) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "account-locked",
        "Account locked",
        format!(
            "too many failed logins; try again after {}",
            state.local(until).format("%Y-%m-%d %H:%M")
        ),
    )
    .with_retry_after(
        u64::try_from((until - now).num_seconds())
            .unwrap_or(0)
            .max(1),
    )
}

/// The password and (outside demo mode) the one-time code; the TOTP step used on success.
fn check_credentials(
    state: &AppState,
    account: &Account,
    req: &LoginRequest,
    now: DateTime<Utc>,
) -> Result<Option<i64>, &'static str> {
    if !auth::verify_password(&req.password, &account.password_hash) {
        return Err("wrong password");
    }
    if state.demo {
        return Ok(None);
    }
    let unix = u64::try_from(now.timestamp()).unwrap_or(0);
    account
        .totp_secret
        .as_deref()
        .and_then(|secret| Totp::new(secret, &account.email, &state.config.operator_name))
        .zip(req.totp_code.as_deref())
        .and_then(|(totp, code)| totp.verify(code, unix))
        .map(Some)
        .ok_or("wrong or missing one-time code")
}

/// Log in with e-mail, password and the one-time code.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = super::problem::Problem),
              (status = 429, body = super::problem::Problem)))]
async fn login(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let now = state.clock.now();
    // Failures are counted per address as typed, whether or not an account has it, so the
    // answers (and the lock) are the same for both and addresses cannot be probed.
    let key = auth::login_key(&req.email);
    let label = audit_label(&req.email);
    if let Some(until) = state.store.login_lock(&key).await? {
        if state.throttle.is_locked(Some(until), now) {
            let event = login_event(
                None,
                &label,
                source,
                Outcome::Denied,
                "locked after failures",
            );
            state.store.append_audit(event, now).await?;
            return Err(account_locked(&state, until, now));
        }
    }
    let account = match Email::parse(&req.email) {
        Err(_) => None,
        Ok(email) => match state.store.account_by_email(email.as_str()).await {
            Ok(a) => Some(a),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let checked = match &account {
        None => {
            auth::verify_password(&req.password, auth::dummy_hash());
            Err("unknown account")
        }
        Some(account) => check_credentials(&state, account, &req, now),
    };
    let (account, totp_step) = match (account, checked) {
        (Some(account), Ok(step)) => (account, step),
        (account, result) => {
            let reason = result.err().unwrap_or("unknown account");
            let event = login_event(account.as_ref(), &label, source, Outcome::Denied, reason);
            let outcome = state
                .store
                .record_login_failure(&key, &state.throttle, now, event)
                .await?;
            tokio::time::sleep(outcome.delay).await;
            return Err(login_failed());
        }
    };
    let email = account.email.clone();
    if !account.active {
        let event = login_event(
            Some(&account),
            &email,
            source,
            Outcome::Denied,
            "account deactivated",
        );
        state.store.append_audit(event, now).await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "account-deactivated",
            "Account deactivated",
            "this account has been deactivated; ask your IT contact",
        ));
    }
    let org = state.store.organisation(account.org_id).await?;
    if org.kind == OrgKind::Provider
        && !org
            .contract
            .is_some_and(|c| c.is_active_on(state.clock.today(state.config.time_zone)))
    {
        let event = login_event(
            Some(&account),
            &email,
            source,
            Outcome::Denied,
            "contract not in force",
        );
        state.store.append_audit(event, now).await?;
        return Err(contract_ended());
    }
    let (token, token_hash) = auth::generate_token();
    let expires_at = now + state.sessions.session_lifetime;
    let session = NewSession {
        account_id: account.id,
        kind: SessionKind::Session,
        name: None,
        token_hash,
        expires_at,
    };
    let event = login_event(
        Some(&account),
        &email,
        source,
        Outcome::Success,
        "password and second factor",
    );
    match state
        .store
        .record_login_success(account.id, &key, totp_step, &session, now, event)
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => return Err(login_failed()),
        Err(e) => return Err(e.into()),
    }
    Ok(Json(LoginResponse {
        token,
        expires_at: state.local(expires_at),
        must_change_password: account.must_change_password,
        notice: LOGGING_NOTICE.to_string(),
    }))
}

/// End the session (or revoke the API token) this request was made with.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204)))]
async fn logout(
    State(state): State<AppState>,
    PasswordChanger(caller, _): PasswordChanger,
) -> Result<StatusCode, ApiError> {
    let event = caller.event(
        "auth.logout",
        "session",
        Some(caller.session_id.to_string()),
    );
    state
        .store
        .revoke_session(
            caller.actor.account_id,
            caller.session_id,
            caller.session_kind,
            state.clock.now(),
            event,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub organisation_id: i64,
    pub organisation_name: String,
    pub must_change_password: bool,
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me)))]
async fn me(
    State(state): State<AppState>,
    PasswordChanger(caller, must_change): PasswordChanger,
) -> Result<Json<Me>, ApiError> {
    let account = state.store.account(caller.actor.account_id).await?;
    let org = state.store.organisation(account.org_id).await?;
    Ok(Json(Me {
        id: account.id,
        email: account.email,
        display_name: account.display_name,
        role: account.role,
        organisation_id: org.id,
        organisation_name: org.name,
        must_change_password: must_change,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Change the caller's password. Every other session of the account ends.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", security(("bearer" = [])),
    request_body = PasswordChange, responses((status = 204), (status = 422, body = super::problem::Problem)))]
async fn change_password(
    State(state): State<AppState>,
    PasswordChanger(caller, _): PasswordChanger,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let account = state.store.account(caller.actor.account_id).await?;
    let now = state.clock.now();
    // Guessing the current password from a live session is throttled like logging in.
    let key = auth::login_key(&account.email);
    if let Some(until) = state.store.login_lock(&key).await? {
        if state.throttle.is_locked(Some(until), now) {
            return Err(account_locked(&state, until, now));
        }
    }
    if !auth::verify_password(&req.current_password, &account.password_hash) {
        let event = caller
            .event(
                "account.change_password",
                "account",
                Some(account.id.to_string()),
            )
            .outcome(Outcome::Denied)
            .details(serde_json::json!({ "reason": "wrong current password" }));
        let outcome = state
            .store
            .record_login_failure(&key, &state.throttle, now, event)
            .await?;
        tokio::time::sleep(outcome.delay).await;
        return Err(ApiError::validation(vec![super::problem::FieldError {
            field: "current_password".into(),
            message: "is wrong".into(),
        }]));
    }
    let mut fields = Fields::default();
    if req.new_password == req.current_password {
        fields.push("new_password", "must differ from the current password");
    }
    fields.check_at(
        "new_password",
        check_password_strength(
            &req.new_password,
            &[account.email.as_str(), account.display_name.as_str()],
        ),
    );
    fields.finish()?;
    let hash = auth::hash_password(&req.new_password);
    let event = caller.event(
        "account.change_password",
        "account",
        Some(account.id.to_string()),
    );
    state
        .store
        .set_password(
            account.id,
            &hash,
            Some(caller.session_id),
            state.clock.now(),
            event,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: Option<String>,
    pub created_at: DateTime<FixedOffset>,
    pub expires_at: DateTime<FixedOffset>,
    pub last_used_at: Option<DateTime<FixedOffset>>,
}

/// The caller's live API tokens (never the secrets).
#[utoipa::path(get, path = "/api/v1/me/tokens", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenView>)))]
async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let tokens = state
        .store
        .list_tokens(caller.actor.account_id, state.clock.now())
        .await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| TokenView {
                id: t.id,
                name: t.name,
                created_at: state.local(t.created_at),
                expires_at: state.local(t.expires_at),
                last_used_at: t.last_used_at.map(|x| state.local(x)),
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// Days until the token expires (1 to 365, default 90).
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: i64,
    /// Shown once; only its hash is stored.
    pub token: String,
    pub expires_at: DateTime<FixedOffset>,
}

/// Create a personal API token for scripts. It acts with the caller's role and dies with the
/// account, a role change or the end of the provider's contract.
#[utoipa::path(post, path = "/api/v1/me/tokens", tag = "auth", security(("bearer" = [])),
    request_body = NewToken, responses((status = 201, body = CreatedToken)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    if caller.session_kind != SessionKind::Session {
        // A leaked short-lived token must not be able to mint a long-lived one.
        return Err(ApiError::forbidden(
            "API tokens are created from a login session, not with another token",
        ));
    }
    let now = state.clock.now();
    let mut fields = Fields::default();
    let name = fields.check(crate::domain::organisation::parse_name("name", &req.name));
    let expires_at = fields.check(state.sessions.token_expiry(now, req.expires_in_days));
    fields.finish()?;
    let (Some(name), Some(expires_at)) = (name, expires_at) else {
        return Err(ApiError::validation(Vec::new()));
    };
    let (token, token_hash) = auth::generate_token();
    let session = NewSession {
        account_id: caller.actor.account_id,
        kind: SessionKind::ApiToken,
        name: Some(name.clone()),
        token_hash,
        expires_at,
    };
    let event = caller
        .event("auth.create_token", "api_token", None)
        .details(serde_json::json!({ "name": name }));
    let id = state.store.create_token(&session, now, event).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id,
            token,
            expires_at: state.local(expires_at),
        }),
    ))
}

/// Revoke one of the caller's API tokens.
#[utoipa::path(delete, path = "/api/v1/me/tokens/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = super::problem::Problem)))]
async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let event = caller.event("auth.revoke_token", "api_token", Some(id.to_string()));
    state
        .store
        .revoke_session(
            caller.actor.account_id,
            id,
            SessionKind::ApiToken,
            state.clock.now(),
            event,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
