//! Commands queued by people: to one phone, or to every enrolled phone of a provider in one
//! request. The command has been checked and permitted by the front end (`domain::command`);
//! here it is put in the form each platform's phones receive, queued, and put on this node's
//! command board so the next check-in picks it up.

use profiles::apps::CatalogueApp;

use super::{FlowError, FlowResult, RejectionClass};
use crate::domain::audit::AuditEvent;
use crate::domain::command::{check_device, priority_name, CheckedCommand};
use crate::domain::device::Platform;
use crate::state::AppState;
use crate::store::commands::{CommandBatch, CommandRecord, NewCommand, NewFanOut};
use crate::store::{Device, Organisation};

/// The catalogue entry an app command names.
async fn catalogue_app(
    state: &AppState,
    command: &CheckedCommand,
) -> FlowResult<Option<CatalogueApp>> {
    let Some(key) = &command.app else {
        return Ok(None);
    };
    let apps = state.store.list_apps().await?;
    apps.into_iter()
        .find(|a| &a.key == key)
        .map(Some)
        .ok_or_else(|| {
            FlowError::invalid(
                "app",
                format!("'{key}' is not in the app catalogue; add it first"),
            )
        })
}

fn identifier(app: Option<&CatalogueApp>, platform: Platform) -> Option<&str> {
    app.and_then(|a| match platform {
        Platform::Android => a.android_package.as_deref(),
        Platform::Ios => a.ios_bundle_id.as_deref(),
    })
}

/// The command as `platform`'s phones receive it (JSON), if it can go to them.
fn payload_for(
    command: &CheckedCommand,
    app: Option<&CatalogueApp>,
    platform: Platform,
) -> Option<String> {
    let action = command.action_for(identifier(app, platform))?;
    serde_json::to_string(&action).ok()
}

fn not_on_platform(app: &str, platform: Platform) -> FlowError {
    FlowError::invalid(
        "app",
        format!(
            "'{app}' has no {} identifier in the catalogue, so this phone cannot get it",
            match platform {
                Platform::Android => "Android package",
                Platform::Ios => "iOS bundle",
            }
        ),
    )
}

/// Queues `command` for `device`, which must be enrolled and not retired; it gets the command
/// at its next check-in. `event` is completed with what was queued.
pub async fn queue(
    state: &AppState,
    device: &Device,
    command: &CheckedCommand,
    by: i64,
    event: AuditEvent,
) -> FlowResult<CommandRecord> {
    check_device(device.status, device.enrolled_at.is_some()).map_err(|why| {
        FlowError::rejected(
            RejectionClass::Conflict,
            "device-not-commandable",
            "The phone cannot take commands",
            format!(
                "phone {} cannot be sent a {}: {why}",
                device.id, command.kind
            ),
        )
    })?;
    let app = catalogue_app(state, command).await?;
    let payload = payload_for(command, app.as_ref(), device.platform).ok_or_else(|| {
        not_on_platform(command.app.as_deref().unwrap_or_default(), device.platform)
    })?;
    let now = state.clock.now();
    let event = event.in_org(device.provider_id).details(serde_json::json!({
        "device_id": device.id,
        "kind": command.kind,
        "priority": priority_name(command.priority),
    }));
    let record = state
        .store
        .queue_command(
            &NewCommand {
                device_id: device.id,
                kind: command.kind,
                payload,
                priority: command.priority,
                expires_at: now + command.expires_in,
                created_by: Some(by),
            },
            now,
            event,
        )
        .await?;
    state.command_board.mark(record.device_id);
    Ok(record)
}

/// Queues `command` for every enrolled phone of `provider`; app commands go to the phones of the
/// platforms the app exists on. `event` is completed with what was queued.
pub async fn queue_to_provider(
    state: &AppState,
    provider: &Organisation,
    command: &CheckedCommand,
    by: i64,
    event: AuditEvent,
) -> FlowResult<CommandBatch> {
    let app = catalogue_app(state, command).await?;
    let android_payload = payload_for(command, app.as_ref(), Platform::Android);
    let ios_payload = payload_for(command, app.as_ref(), Platform::Ios);
    if android_payload.is_none() && ios_payload.is_none() {
        return Err(not_on_platform(
            command.app.as_deref().unwrap_or_default(),
            Platform::Android,
        ));
    }
    let ios_payload_queued = ios_payload.is_some();
    let now = state.clock.now();
    let event = event.in_org(Some(provider.id)).details(serde_json::json!({
        "provider_id": provider.id,
        "kind": command.kind,
        "priority": priority_name(command.priority),
    }));
    let batch = state
        .store
        .queue_fan_out(
            &NewFanOut {
                provider_id: provider.id,
                kind: command.kind,
                android_payload,
                ios_payload,
                priority: command.priority,
                expires_at: now + command.expires_in,
                created_by: Some(by),
            },
            now,
            event,
        )
        .await?;
    // The phones of the batch are on this node's board before the answer goes out.
    state.command_board.refresh(state.store.as_ref()).await?;
    // Its iPhones connect only when pushed: the pusher spreads the pushes out.
    if ios_payload_queued {
        let iphones = state.store.apple_device_ids(Some(provider.id)).await?;
        state.command_board.wake(iphones);
    }
    Ok(batch)
}
