//! Leases and holders: municipal IT leases a phone to a provider, the provider's IT contacts
//! hand it to a holder and return it, and a provider whose contract has ended loses every lease.
//! A phone changes hands only after the wipe `domain::wipe_gate` demands; every ending queues
//! that wipe in the same transaction.

use chrono::{DateTime, NaiveDate, Utc};

use super::{FlowError, FlowResult};
use crate::domain::audit::AuditEvent;
use crate::domain::command::CommandKind;
use crate::domain::lease::{self, LeaseEnd, LeaseTerms};
use crate::domain::organisation::OrgKind;
use crate::domain::role::{Role, Scope};
use crate::state::AppState;
use crate::store::commands::CommandTemplate;
use crate::store::leasing::{Lease, LeaseEnding, NewLease};
use crate::store::{Organisation, StoreError};

/// What municipal IT asks for when it leases a phone.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseOrder {
    pub device_id: i64,
    pub provider_id: i64,
    /// Default: today.
    pub starts_on: Option<NaiveDate>,
    pub ends_on: Option<NaiveDate>,
    /// May be left out only when the lease replaces a written-off phone's: its terms carry over.
    pub monthly_price_sek: Option<f64>,
    pub data_gb: Option<u32>,
    pub holder_id: Option<i64>,
    pub request_id: Option<i64>,
}

/// The provider a request names in `provider_id`; a field error when there is none.
pub async fn named_provider(state: &AppState, id: i64) -> FlowResult<Organisation> {
    match state.store.organisation(id).await {
        Ok(org) if org.kind == OrgKind::Provider => Ok(org),
        Ok(_) | Err(StoreError::NotFound) => {
            Err(FlowError::invalid("provider_id", "no such provider"))
        }
        Err(e) => Err(e.into()),
    }
}

/// A holder must be an active user (or admin) of the provider the phone is leased to.
async fn check_holder(state: &AppState, provider_id: i64, holder: i64) -> FlowResult<()> {
    match state.store.account(holder).await {
        Ok(a)
            if a.org_id == provider_id
                && a.active
                && matches!(a.role, Role::ProviderUser | Role::ProviderAdmin) =>
        {
            Ok(())
        }
        Ok(_) | Err(StoreError::NotFound) => Err(FlowError::invalid(
            "holder_id",
            "the holder must be an active user of the provider the phone is leased to",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The terms of a lease fulfilling a replacement request: those of the written-off phone's
/// lease, from `starts_on`.
async fn replaced_terms(
    state: &AppState,
    request_id: Option<i64>,
    starts_on: NaiveDate,
) -> FlowResult<Option<LeaseTerms>> {
    let Some(request_id) = request_id else {
        return Ok(None);
    };
    let request = state.store.request(Scope::Everything, request_id).await?;
    let Some(old) = request.replaces_lease_id else {
        return Ok(None);
    };
    let old = state.store.lease(Scope::Everything, old).await?;
    Ok(Some(LeaseTerms::carried_over(
        starts_on,
        old.ends_on,
        old.monthly_price_ore,
        old.data_gb,
    )))
}

/// Leases a phone to a provider. Refused while the phone is lost, in repair, retired, leased,
/// or not wiped since its last assignment, or when the provider's contract is not running.
/// `event` is completed with what was leased.
pub async fn lease(
    state: &AppState,
    order: &LeaseOrder,
    by: i64,
    event: AuditEvent,
) -> FlowResult<Lease> {
    let today = state.clock.today(state.config.time_zone);
    let provider = named_provider(state, order.provider_id).await?;
    let starts_on = order.starts_on.unwrap_or(today);
    let terms = match (
        order.monthly_price_sek,
        replaced_terms(state, order.request_id, starts_on).await?,
    ) {
        (Some(price), _) => LeaseTerms::parse(starts_on, order.ends_on, price, order.data_gb)?,
        (None, Some(terms)) => terms,
        (None, None) => {
            return Err(FlowError::invalid(
                "monthly_price_sek",
                "give the monthly price in kronor",
            ))
        }
    };
    if let Some(holder) = order.holder_id {
        check_holder(state, provider.id, holder).await?;
    }
    lease::check_contract(provider.contract, today)?;
    let device = state
        .store
        .device(Scope::Everything, order.device_id)
        .await
        .map_err(|_| FlowError::invalid("device_id", "no such device"))?;
    let event = event.in_org(Some(provider.id)).details(serde_json::json!({
        "device_id": device.id,
        "serial": device.serial,
        "provider_id": provider.id,
        "starts_on": terms.starts_on,
        "ends_on": terms.ends_on,
        "monthly_price_ore": terms.monthly_price_ore,
        "holder_id": order.holder_id,
        "request_id": order.request_id,
    }));
    Ok(state
        .store
        .lease_device(
            &NewLease {
                device_id: device.id,
                provider_id: provider.id,
                terms,
                holder_id: order.holder_id,
                request_id: order.request_id,
                created_by: Some(by),
            },
            state.clock.now(),
            event,
        )
        .await?)
}

/// Hands a leased phone (placed with `provider_id`) to `holder`, or back to the pool (`None`).
/// A new holder after another needs the phone wiped and enrolled again first.
pub async fn set_holder(
    state: &AppState,
    device_id: i64,
    provider_id: Option<i64>,
    holder: Option<i64>,
    event: AuditEvent,
) -> FlowResult<Lease> {
    if let (Some(h), Some(provider)) = (holder, provider_id) {
        check_holder(state, provider, h).await?;
    }
    Ok(state
        .store
        .set_holder(device_id, provider_id, holder, state.clock.now(), event)
        .await?)
}

/// A wipe queued by a flow, not by a person's command.
fn wipe(now: DateTime<Utc>, by: Option<i64>) -> FlowResult<CommandTemplate> {
    Ok(CommandTemplate::automatic(
        CommandKind::Wipe,
        None,
        None,
        now,
        by,
    )?)
}

/// Returns a phone leased to `provider_id`: the lease ends, the holder is cleared and a wipe is
/// queued; the phone waits for it. Returns the ended lease and the wipe command.
pub async fn return_phone(
    state: &AppState,
    device_id: i64,
    provider_id: i64,
    by: i64,
    event: AuditEvent,
) -> FlowResult<(Lease, i64)> {
    let now = state.clock.now();
    let ending = LeaseEnding {
        how: LeaseEnd::Returned,
        wipe: wipe(now, Some(by))?,
    };
    let ended = state
        .store
        .end_lease(device_id, provider_id, &ending, now, event)
        .await?;
    state.command_board.mark(device_id);
    Ok(ended)
}

/// Ends the leases of every provider whose contract has ended; the phones are listed for return
/// (awaiting wipe) and their wipes queued. The provider's accounts lost access when the contract
/// ended (`ContractPeriod::is_active_on`).
pub async fn end_contracts(state: &AppState, now: DateTime<Utc>) -> FlowResult<()> {
    let today = now.with_timezone(&state.config.time_zone).date_naive();
    for provider in state.store.providers_past_contract(today).await? {
        let ending = LeaseEnding {
            how: LeaseEnd::ContractEnded,
            wipe: wipe(now, None)?,
        };
        let mut event = AuditEvent::unattended("leasing", "lease.contract_end");
        event.org_id = Some(provider);
        event.target_kind = Some("provider".into());
        event.target_id = Some(provider.to_string());
        let devices = state
            .store
            .end_provider_leases(provider, &ending, now, event)
            .await?;
        tracing::info!(
            provider,
            phones = devices.len(),
            "contract ended: leases ended, wipes queued"
        );
        for device in devices {
            state.command_board.mark(device);
        }
    }
    Ok(())
}

/// A second operator admin confirms a manual wipe: the phone counts as wiped, its identity is
/// revoked and its queue purged.
pub async fn confirm_manual_wipe(
    state: &AppState,
    device_id: i64,
    by: i64,
    event: AuditEvent,
) -> FlowResult<crate::store::leasing::ManualWipe> {
    let wipe = state
        .store
        .confirm_manual_wipe(device_id, by, state.clock.now(), event)
        .await?;
    state.command_board.mark(device_id);
    Ok(wipe)
}
