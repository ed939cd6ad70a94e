//! Provider organisations: their organisation numbers, contracts and IT contacts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::caller::Caller;
use super::present;
use super::problem::{checked, ApiError, ApiJson, ApiPath, Fields};
use super::AppState;
use crate::domain::contact::{Email, ItContact, MobileNumber, MAX_IT_CONTACTS};
use crate::domain::organisation::{parse_name, ContractPeriod, OrgKind, OrgNumber};
use crate::domain::role::Role;
use crate::store::{NewProvider, Organisation, ProviderChange};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_providers, create_provider))
        .routes(routes!(get_provider, update_provider))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItContactBody {
    pub name: String,
    pub email: String,
    /// E.164, for example +46701234567.
    pub mobile: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub id: i64,
    pub name: String,
    pub org_number: Option<String>,
    pub contract_start: Option<NaiveDate>,
    pub contract_end: Option<NaiveDate>,
    /// Whether the contract is in force today (the provider's people can log in).
    pub contract_active: bool,
    pub it_contacts: Vec<ItContactBody>,
    pub created_at: DateTime<FixedOffset>,
    pub updated_at: DateTime<FixedOffset>,
}

impl ProviderView {
    fn new(state: &AppState, org: Organisation) -> Self {
        let today = state.clock.today(state.config.time_zone);
        ProviderView {
            id: org.id,
            name: org.name,
            org_number: org.org_number,
            contract_start: org.contract.map(|c| c.start),
            contract_end: org.contract.and_then(|c| c.end),
            contract_active: org.contract.is_some_and(|c| c.is_active_on(today)),
            it_contacts: org
                .it_contacts
                .into_iter()
                .map(|c| ItContactBody {
                    name: c.name,
                    email: c.email.into(),
                    mobile: c.mobile.into(),
                })
                .collect(),
            created_at: state.local(org.created_at),
            updated_at: state.local(org.updated_at),
        }
    }
}

fn parse_contacts(fields: &mut Fields, contacts: &[ItContactBody]) -> Option<Vec<ItContact>> {
    if contacts.len() > MAX_IT_CONTACTS {
        fields.push(
            "it_contacts",
            format!("at most {MAX_IT_CONTACTS} IT contacts"),
        );
        return None;
    }
    let parsed: Vec<Option<ItContact>> = contacts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = |field: &str| format!("it_contacts[{i}].{field}");
            let name = fields.check_at(at("name"), parse_name("name", &c.name));
            let email = fields.check_at(at("email"), Email::parse(&c.email));
            let mobile = fields.check_at(at("mobile"), MobileNumber::parse(&c.mobile));
            Some(ItContact {
                name: name?,
                email: email?,
                mobile: mobile?,
            })
        })
        .collect();
    parsed.into_iter().collect()
}

/// A provider inside the caller's view, or 404.
async fn visible_provider(
    state: &AppState,
    caller: &Caller,
    id: i64,
) -> Result<Organisation, ApiError> {
    if !caller.actor.scope().allows(Some(id)) {
        return Err(ApiError::not_found());
    }
    let org = state.store.organisation(id).await?;
    if org.kind != OrgKind::Provider {
        return Err(ApiError::not_found());
    }
    Ok(org)
}

/// Providers the caller may see: all for the operator, its own for a provider's people.
#[utoipa::path(get, path = "/api/v1/providers", tag = "providers", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProviderView>)))]
async fn list_providers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ProviderView>>, ApiError> {
    let orgs = match caller.actor.scope().org() {
        None => state.store.list_providers().await?,
        Some(own) => vec![state.store.organisation(own).await?],
    };
    // The list shows the IT contacts' names and numbers: a read of personal data.
    state
        .store
        .append_audit(
            caller.event("provider.list", "organisation", None),
            state.clock.now(),
        )
        .await?;
    Ok(Json(
        orgs.into_iter()
            .map(|o| ProviderView::new(&state, o))
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProviderBody {
    pub name: String,
    /// Swedish organisation number, NNNNNN-NNNN.
    pub org_number: String,
    pub contract_start: NaiveDate,
    pub contract_end: Option<NaiveDate>,
    #[serde(default)]
    pub it_contacts: Vec<ItContactBody>,
}

/// Register a provider (operator admin).
#[utoipa::path(post, path = "/api/v1/providers", tag = "providers", security(("bearer" = [])),
    request_body = NewProviderBody,
    responses((status = 201, body = ProviderView), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn create_provider(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewProviderBody>,
) -> Result<(StatusCode, Json<ProviderView>), ApiError> {
    caller.actor.require_operator_admin()?;
    let mut fields = Fields::default();
    let name = fields.check(parse_name("name", &body.name));
    let org_number = fields.check(OrgNumber::parse(&body.org_number));
    let contract = fields.check(ContractPeriod::new(body.contract_start, body.contract_end));
    let it_contacts = parse_contacts(&mut fields, &body.it_contacts);
    fields.finish()?;
    let provider = NewProvider {
        name: checked(name)?,
        org_number: checked(org_number)?,
        contract: checked(contract)?,
        it_contacts: checked(it_contacts)?,
    };
    let event = caller
        .event("provider.create", "organisation", None)
        .details(serde_json::json!({ "name": provider.name, "org_number": provider.org_number.as_str() }));
    let org = state
        .store
        .create_provider(&provider, state.clock.now(), event)
        .await?;
    Ok((StatusCode::CREATED, Json(ProviderView::new(&state, org))))
}

/// One provider.
#[utoipa::path(get, path = "/api/v1/providers/{id}", tag = "providers", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = ProviderView), (status = 404, body = super::problem::Problem)))]
async fn get_provider(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ProviderView>, ApiError> {
    let org = visible_provider(&state, &caller, id).await?;
    let event = caller
        .event("provider.read", "organisation", Some(id.to_string()))
        .in_org(Some(id));
    state.store.append_audit(event, state.clock.now()).await?;
    Ok(Json(ProviderView::new(&state, org)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderChangeBody {
    pub name: Option<String>,
    pub contract_start: Option<NaiveDate>,
    /// A date ends the contract after that day; `null` makes it open-ended.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>)]
    pub contract_end: Option<Option<NaiveDate>>,
    /// Replaces the whole list.
    pub it_contacts: Option<Vec<ItContactBody>>,
}

/// Change a provider. The operator admin may change everything; the provider's own admin may
/// change its IT contacts. Ending the contract cuts off the provider's people at once.
#[utoipa::path(patch, path = "/api/v1/providers/{id}", tag = "providers", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ProviderChangeBody,
    responses((status = 200, body = ProviderView), (status = 404, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
async fn update_provider(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ProviderChangeBody>,
) -> Result<Json<ProviderView>, ApiError> {
    let current = visible_provider(&state, &caller, id).await?;
    let only_contacts =
        body.name.is_none() && body.contract_start.is_none() && body.contract_end.is_none();
    let allowed = caller.actor.role == Role::OperatorAdmin
        || (caller.actor.role == Role::ProviderAdmin && only_contacts);
    if !allowed {
        return Err(ApiError::forbidden("your role does not allow this change"));
    }
    let mut fields = Fields::default();
    let name = body
        .name
        .as_deref()
        .map(|n| fields.check(parse_name("name", n)));
    let contract = if body.contract_start.is_some() || body.contract_end.is_some() {
        let start = body.contract_start.or(current.contract.map(|c| c.start));
        let end = body
            .contract_end
            .unwrap_or(current.contract.and_then(|c| c.end));
        match start {
            Some(start) => fields.check(ContractPeriod::new(start, end)),
            None => {
                fields.push("contract_start", "is required");
                None
            }
        }
    } else {
        None
    };
    let contacts = body
        .it_contacts
        .as_ref()
        .map(|c| parse_contacts(&mut fields, c));
    fields.finish()?;
    let change = ProviderChange {
        name: name.flatten(),
        contract,
        it_contacts: contacts.flatten(),
    };
    let event = caller
        .event("provider.update", "organisation", Some(id.to_string()))
        .in_org(Some(id))
        .details(serde_json::json!({
            "name": change.name,
            "contract_start": change.contract.map(|c| c.start),
            "contract_end": change.contract.and_then(|c| c.end),
            "it_contacts_replaced": change.it_contacts.is_some(),
        }));
    let org = state
        .store
        .update_provider(id, &change, state.clock.now(), event)
        .await?;
    Ok(Json(ProviderView::new(&state, org)))
}
