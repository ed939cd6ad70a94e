//! Personal accounts. Operator admins manage everyone; provider admins their own staff.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::problem::{checked, ApiError, ApiJson, ApiPath, ApiQuery, Fields};
use super::AppState;
use crate::auth;
use crate::domain::contact::Email;
use crate::domain::organisation::{parse_name, OrgKind};
use crate::domain::role::{Role, Scope};
use crate::store::{Account, AccountChange, NewAccount};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub organisation_id: i64,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub active: bool,
    pub must_change_password: bool,
    pub second_factor_enrolled: bool,
    pub locked_until: Option<DateTime<FixedOffset>>,
    pub last_login_at: Option<DateTime<FixedOffset>>,
    pub created_at: DateTime<FixedOffset>,
}

impl UserView {
    /// The account as the API shows it, with whether logins to it are locked right now.
    async fn load(state: &AppState, a: Account) -> Result<Self, ApiError> {
        let now = state.clock.now();
        let locked_until = state
            .store
            .login_lock(&auth::login_key(&a.email))
            .await?
            .filter(|t| state.throttle.is_locked(Some(*t), now));
        Ok(UserView {
            id: a.id,
            organisation_id: a.org_id,
            email: a.email,
            display_name: a.display_name,
            role: a.role,
            active: a.active,
            must_change_password: a.must_change_password,
            second_factor_enrolled: a.totp_secret.is_some(),
            locked_until: locked_until.map(|t| state.local(t)),
            last_login_at: a.last_login_at.map(|t| state.local(t)),
            created_at: state.local(a.created_at),
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    /// Only this organisation's accounts (operator admins).
    pub organisation_id: Option<i64>,
}

/// Accounts the caller may manage: everyone for an operator admin, its own organisation's for a
/// provider admin. Reading the list is recorded in the audit trail.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])), params(UserQuery),
    responses((status = 200, body = Vec<UserView>), (status = 403, body = super::problem::Problem)))]
async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> Result<Json<Vec<UserView>>, ApiError> {
    if !caller.actor.may_read_accounts() {
        return Err(ApiError::forbidden(
            "your role does not allow reading accounts",
        ));
    }
    let scope = match (caller.actor.scope(), query.organisation_id) {
        (Scope::Everything, Some(org)) => Scope::Organisation(org),
        (scope, _) => scope,
    };
    let accounts = state.store.list_accounts(scope).await?;
    let event = caller
        .event("account.list", "account", None)
        .in_org(scope.org())
        .details(serde_json::json!({ "count": accounts.len() }));
    state.store.append_audit(event, state.clock.now()).await?;
    let mut views = Vec::with_capacity(accounts.len());
    for account in accounts {
        views.push(UserView::load(&state, account).await?);
    }
    Ok(Json(views))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    /// The organisation the account belongs to; defaults to the caller's own.
    pub organisation_id: Option<i64>,
    pub email: String,
    pub display_name: String,
    /// operator_admin, operator_staff, provider_admin or provider_user.
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: UserView,
    /// Hand this to the person; it works once and must be changed at first login.
    pub one_time_password: String,
    /// The `otpauth://` URI for the person's authenticator app.
    pub totp_uri: String,
}

/// Create a personal account. The answer carries a one-time password and the TOTP enrolment
/// URI, shown only this once.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])), request_body = NewUserBody,
    responses((status = 201, body = CreatedUser), (status = 403, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewUserBody>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let org_id = body.organisation_id.unwrap_or(caller.actor.org_id);
    if !caller.actor.scope().allows(Some(org_id)) {
        return Err(ApiError::not_found());
    }
    let org = state.store.organisation(org_id).await?;
    let mut fields = Fields::default();
    let email = fields.check(Email::parse(&body.email));
    let name = fields.check(parse_name("display_name", &body.display_name));
    let role = fields.check(Role::parse_for(&body.role, org.kind == OrgKind::Operator));
    fields.finish()?;
    let (email, display_name, role) = (checked(email)?, checked(name)?, checked(role)?);
    caller
        .actor
        .may_manage_account(org.id, org.kind == OrgKind::Operator, role)?;
    let issued = auth::new_credentials(email.as_str(), &state.config.operator_name);
    let account = NewAccount {
        org_id: org.id,
        email: email.to_string(),
        display_name,
        role,
        password_hash: auth::hash_password(&issued.one_time_password),
        must_change_password: true,
        totp_secret: Some(issued.totp_secret.clone()),
    };
    let event = caller
        .event("account.create", "account", None)
        .in_org(Some(org.id))
        .details(serde_json::json!({ "email": account.email, "role": role.as_str() }));
    let created = state
        .store
        .create_account(&account, state.clock.now(), event)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: UserView::load(&state, created).await?,
            one_time_password: issued.one_time_password,
            totp_uri: issued.totp_uri,
        }),
    ))
}

/// An account inside the caller's view, or 404.
async fn visible_account(state: &AppState, caller: &Caller, id: i64) -> Result<Account, ApiError> {
    if !caller.actor.may_read_accounts() && id != caller.actor.account_id {
        return Err(ApiError::not_found());
    }
    let account = state.store.account(id).await?;
    if !caller.actor.scope().allows(Some(account.org_id)) {
        return Err(ApiError::not_found());
    }
    Ok(account)
}

/// One account. Reading it is recorded in the audit trail.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = UserView), (status = 404, body = super::problem::Problem)))]
async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<UserView>, ApiError> {
    let account = visible_account(&state, &caller, id).await?;
    let event = caller
        .event("account.read", "account", Some(id.to_string()))
        .in_org(Some(account.org_id));
    state.store.append_audit(event, state.clock.now()).await?;
    Ok(Json(UserView::load(&state, account).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChangeBody {
    pub display_name: Option<String>,
    pub role: Option<String>,
    /// `false` deactivates the account and ends its sessions at once.
    pub active: Option<bool>,
}

/// Change an account's name, role or active flag. A new role or a deactivation ends every
/// session and token of the account at once.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = UserChangeBody,
    responses((status = 200, body = UserView), (status = 403, body = super::problem::Problem),
              (status = 404, body = super::problem::Problem), (status = 409, body = super::problem::Problem)))]
async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UserChangeBody>,
) -> Result<Json<UserView>, ApiError> {
    let account = visible_account(&state, &caller, id).await?;
    let org = state.store.organisation(account.org_id).await?;
    let is_operator_org = org.kind == OrgKind::Operator;
    caller
        .actor
        .may_manage_account(org.id, is_operator_org, account.role)?;
    let mut fields = Fields::default();
    let name = body
        .display_name
        .as_deref()
        .map(|n| fields.check(parse_name("display_name", n)));
    let role = body
        .role
        .as_deref()
        .map(|r| fields.check(Role::parse_for(r, is_operator_org)));
    fields.finish()?;
    let change = AccountChange {
        display_name: name.flatten(),
        role: role.flatten(),
        active: body.active,
    };
    if let Some(role) = change.role {
        caller
            .actor
            .may_manage_account(org.id, is_operator_org, role)?;
    }
    if id == caller.actor.account_id
        && (change.role.is_some_and(|r| r != account.role) || change.active == Some(false))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "own-account",
            "Own account",
            "you cannot change your own role or deactivate yourself; ask another administrator",
        ));
    }
    let event = caller
        .event("account.update", "account", Some(id.to_string()))
        .in_org(Some(org.id))
        .details(serde_json::json!({
            "display_name": change.display_name,
            "role": change.role.map(Role::as_str),
            "active": change.active,
        }));
    let updated = state
        .store
        .update_account(id, &change, state.clock.now(), event)
        .await?;
    Ok(Json(UserView::load(&state, updated).await?))
}
