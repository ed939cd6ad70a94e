//! A faulty phone's warranty case: a replacement phone takes over its lease and holder, and
//! the faulty phone keeps its record and history. The case's steps are checked in
//! `domain::warranty`.

use super::{FlowError, FlowResult};
use crate::domain::audit::AuditEvent;
use crate::domain::role::Scope;
use crate::state::AppState;
use crate::store::leasing::Lease;
use crate::store::warranty::WarrantyCase;

/// The phone `replacement` (in stock, enrolled and compliant) takes over the lease and holder
/// of the faulty phone of case `id`. Returns the case and the replacement's lease.
pub async fn swap(
    state: &AppState,
    id: i64,
    replacement: i64,
    by: i64,
    event: AuditEvent,
) -> FlowResult<(WarrantyCase, Lease)> {
    let case = state.store.warranty_case(id).await?;
    state
        .store
        .device(Scope::Everything, replacement)
        .await
        .map_err(|_| FlowError::invalid("replacement_device_id", "no such device"))?;
    let faulty = state
        .store
        .device(Scope::Everything, case.device_id)
        .await?;
    Ok(state
        .store
        .swap_warranty_phone(
            id,
            replacement,
            Some(by),
            state.clock.today(state.config.time_zone),
            state.clock.now(),
            event.in_org(faulty.provider_id),
        )
        .await?)
}
